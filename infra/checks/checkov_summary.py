"""Summarises one checkov JSON report: counts, every suppression with its reason, every failure.

Usage: python checkov_summary.py REPORT.json LABEL
Exits 1 when a check failed, when a suppression gives no reason, or when checkov reported
nothing (a scan that saw no resources proves nothing).
"""

import json
import sys


def main(path: str, label: str) -> None:
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    reports = report if isinstance(report, list) else [report]
    passed = failed = skipped = 0
    failures, skips = [], []
    for r in reports:
        summary = r.get("summary", {})
        passed += summary.get("passed", 0)
        failed += summary.get("failed", 0)
        skipped += summary.get("skipped", 0)
        results = r.get("results", {})
        for check in results.get("failed_checks", []):
            failures.append(check)
        for check in results.get("skipped_checks", []):
            skips.append(check)
    print(f"    {label}: {passed} passed, {failed} failed, {skipped} skipped")
    seen = set()
    unexplained = 0
    for check in skips:
        key = (check["check_id"], check["resource"])
        if key in seen:
            continue
        seen.add(key)
        reason = " ".join(str(check.get("check_result", {}).get("suppress_comment", "")).split())
        if len(reason) < 20 or reason.lower().startswith("no comment"):
            unexplained += 1
            print(f"      UNEXPLAINED skip {check['check_id']} on {check['resource']}: give the reason in place")
        else:
            print(f"      skipped {check['check_id']} on {check['resource']}: {reason}")
    for check in failures:
        lines = check.get("file_line_range", [])
        print(
            f"      FAILED {check['check_id']} {check['check_name']}\n"
            f"        resource {check['resource']} in {check.get('file_path')} lines {lines}\n"
            f"        guideline {check.get('guideline')}"
        )
    if failed or unexplained or passed == 0:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
