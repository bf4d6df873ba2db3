# Sourced by the scripts that need Python tools.
#
# make_venv VENV: a virtual environment with pip, from the machine's python3. Where `python3 -m
# venv` cannot give it pip (Debian's python3 without the python3-venv package has no ensurepip),
# the venv is made without pip and pip is installed into it from its own wheel, pinned below and
# fetched from the package index by scripts/lib/pip_wheel.py. VENV_WITHOUT_ENSUREPIP=1 takes that
# path on any machine, to check it.
#
# ensure_venv VENV REQUIREMENTS: make_venv, then VENV holds exactly what REQUIREMENTS pins,
# reinstalled only when that file changed (a stamp of its hash in VENV).

# The pip that bootstraps a venv on a Python without ensurepip (PyPI's pip-26.3-py3-none-any.whl).
PIP_BOOTSTRAP_VERSION=26.3
PIP_BOOTSTRAP_SHA256=f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13

make_venv() {
    local venv=$1
    # A venv whose pip works is kept; a half-made one (`python3 -m venv` failing at ensurepip
    # leaves one without pip) is completed in place (VENV may hold other venvs: .venv/infra).
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        return
    fi
    if [ -z "${VENV_WITHOUT_ENSUREPIP:-}" ] && python3 -c 'import ensurepip' 2>/dev/null &&
        python3 -m venv "$venv"; then
        return
    fi
    echo "    $venv: python3 has no ensurepip: a venv without pip, then pip" \
        "$PIP_BOOTSTRAP_VERSION from its wheel"
    python3 -m venv --without-pip "$venv"
    local wheel
    wheel=$(python3 "$(dirname "${BASH_SOURCE[0]}")/pip_wheel.py" "$PIP_BOOTSTRAP_VERSION" \
        "$PIP_BOOTSTRAP_SHA256" "${XDG_CACHE_HOME:-$HOME/.cache}/session-service/wheels") ||
        { echo "    $venv: could not fetch pip's wheel (above)" >&2; return 1; }
    "$venv/bin/python" "$wheel/pip" install --quiet --disable-pip-version-check "$wheel"
}

ensure_venv() {
    local venv=$1 requirements=$2
    make_venv "$venv"
    local stamp="$venv/.requirements.sha256" wanted
    wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$wanted" ]; then
        echo "    $venv: already installed ($requirements)"
    else
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$wanted" >"$stamp"
    fi
}
