# Sourced: sets TORCH_PYTHON to a python with torch and h5py, for the tests that
# compare with PyTorch. Uses, in order: $MANCS_TORCH_PYTHON; python3 if it has
# them; launch/parity's venv (~/.cache/mancs-parity/venv) if it has them; else
# makes ~/.cache/mancs-torch/venv and pip-installs torch (CPU wheels, or PyPI's
# when the PyTorch index is out of reach) and h5py.
#   torch_python [MODULE[=PIP_PACKAGE] ...]
# also requires the given modules (e.g. `safetensors PIL=pillow`), pip-installing
# them into one of those venvs that has torch but not them.
# If pip cannot reach PyPI the calling test is skipped with a loud message
# (exit 0); any other failure fails it.
torch_python() {
    local imports="torch, h5py, numpy" packages=() spec py
    for spec in "$@"; do imports="$imports, ${spec%%=*}"; packages+=("${spec#*=}"); done
    for py in "${MANCS_TORCH_PYTHON:-}" python3 "$HOME/.cache/mancs-parity/venv/bin/python" \
              "$HOME/.cache/mancs-torch/venv/bin/python"; do
        [ -n "$py" ] || continue
        if "$py" -c "import $imports" 2>/dev/null; then TORCH_PYTHON="$py"; return 0; fi
    done
    local venv
    if ((${#packages[@]})); then
        # A venv of ours with torch but without the extra modules: add them.
        for venv in "$HOME/.cache/mancs-parity/venv" "$HOME/.cache/mancs-torch/venv"; do
            "$venv/bin/python" -c "import torch, h5py, numpy" 2>/dev/null || continue
            echo "installing ${packages[*]} into $venv"
            "$venv/bin/pip" install --quiet "${packages[@]}" || torch_pip_failed
            TORCH_PYTHON="$venv/bin/python"; return 0
        done
    fi
    venv="$HOME/.cache/mancs-torch/venv"
    echo "installing torch (CPU), h5py${packages[*]:+ and ${packages[*]}} into $venv"
    python3 -m venv "$venv" || { echo "FAIL: python3 -m venv $venv" >&2; exit 1; }
    # The CPU-only wheels first (small); where that index is out of reach but PyPI is
    # not (a proxy that serves PyPI only), torch from PyPI (larger, runs on CPU too).
    if ! "$venv/bin/pip" install --quiet --retries 1 --timeout 20 --index-url https://download.pytorch.org/whl/cpu torch \
         2>/dev/null; then
        echo "download.pytorch.org is out of reach: torch from PyPI"
        "$venv/bin/pip" install --quiet torch || torch_pip_failed
    fi
    "$venv/bin/pip" install --quiet h5py numpy "${packages[@]}" || torch_pip_failed
    TORCH_PYTHON="$venv/bin/python"
}

# A pip install failed: skip loudly when PyPI is out of reach, else fail.
torch_pip_failed() {
    if ! python3 -c "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/h5py/', timeout=20)" 2>/dev/null; then
        echo "################################################################" >&2
        echo "SKIPPED $(basename "$0"): pip cannot reach PyPI to install torch;" >&2
        echo "this comparison with PyTorch did NOT run." >&2
        echo "################################################################" >&2
        exit 0
    fi
    echo "FAIL: pip install failed although PyPI is reachable" >&2; exit 1
}
