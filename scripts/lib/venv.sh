# Sourced by the scripts that need Python tools: ensure_venv VENV REQUIREMENTS makes VENV (a
# virtual environment) hold exactly what REQUIREMENTS pins, reinstalling only when that file
# changed (a stamp of its hash in VENV).
ensure_venv() {
    local venv=$1 requirements=$2
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    local stamp="$venv/.requirements.sha256" wanted
    wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$wanted" ]; then
        echo "    $venv: already installed ($requirements)"
    else
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$wanted" >"$stamp"
    fi
}
