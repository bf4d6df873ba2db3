//! `docs/metrics.md` is the document the metrics registry generates
//! (`session_core::metrics_catalog::render_markdown`), and every alert it names is a rule of the
//! PrometheusRule or an alarm of the template.
//!
//! Regenerate the file after changing the registry:
//! `UPDATE_METRICS_DOC=1 cargo test -p session-tests --test metrics_doc`.

use std::path::PathBuf;

use session_core::metrics_catalog::{self, Emitter};

const REGENERATE: &str = "UPDATE_METRICS_DOC=1 cargo test -p session-tests --test metrics_doc";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_default()
}

#[test]
fn docs_metrics_md_is_the_document_the_registry_generates() {
    session_tests::golden::assert_generated(
        "docs/metrics.md",
        &metrics_catalog::render_markdown(),
        "UPDATE_METRICS_DOC",
        REGENERATE,
    );
}

#[test]
fn every_alert_the_registry_names_exists_and_uses_its_metric() {
    let rules = read("infra/k8s/base/prometheusrule.yaml");
    let template = read("infra/template.yaml");
    for spec in metrics_catalog::METRICS {
        for alert in spec.alerts {
            match spec.emitter {
                Emitter::Prometheus => {
                    let start = rules
                        .find(&format!("alert: {alert}\n"))
                        .unwrap_or_else(|| panic!("{alert} ({}) is not in the rules", spec.name));
                    // The rule's text runs to the next rule.
                    let rule = &rules[start..];
                    let rule = &rule[..rule[1..].find("- alert:").map_or(rule.len(), |i| i + 1)];
                    assert!(
                        rule.contains(spec.name),
                        "{alert} does not use {}",
                        spec.name
                    );
                }
                Emitter::CloudWatch | Emitter::Emf => assert!(
                    template.contains(alert),
                    "{alert} ({}) is not in the template",
                    spec.name
                ),
            }
        }
    }
}

#[test]
fn every_prometheus_alert_links_its_runbook_section_and_the_section_exists() {
    let rules = read("infra/k8s/base/prometheusrule.yaml");
    let runbook = read("docs/deploy.md");
    for line in rules.lines() {
        let Some(alert) = line.trim().strip_prefix("- alert: ") else {
            continue;
        };
        let anchor = format!("alert-{}", alert.to_lowercase());
        assert!(
            rules.contains(&format!("runbook_url: docs/deploy.md#{anchor}\n")),
            "{alert} has no runbook_url docs/deploy.md#{anchor}"
        );
        assert!(
            runbook.contains(&format!("<a id=\"{anchor}\"></a>")),
            "docs/deploy.md has no section {anchor} for {alert}"
        );
    }
}
