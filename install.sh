#!/usr/bin/env bash
# Install dfptmag. Safe to run again.
#
#   ./install.sh          the Python package; Quantum ESPRESSO only if no pw.x/ph.x/ld1.x is found
#                         (in $DFPTMAG_QE_BIN or on PATH), then from Debian's package (QE 6.7; needs
#                         root or sudo). With your site's QE loaded (module load ...) nothing needs root.
#   ./install.sh --test   the above, plus what the test suite needs: the test and docs extras,
#                         Debian's chromium (headless docs check), a one-node
#                         Slurm (slurm-wlm + munge, started by the tests themselves), and the QE 7.x
#                         builds of ../shared/qe/*.tgz (when present) unpacked into .qe/<version>/
#                         with their runtime libraries, so that the suite runs on every QE it finds.
#
# On a cluster without root: python3 -m pip install --user .   (or pipx install .) with QE loaded.
set -euo pipefail
cd "$(dirname "$0")"
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "install.sh: $* needed, and this is not a Debian/Ubuntu system: install them yourself" >&2
        exit 2
    fi
    if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
        echo "install.sh: $* needed and you are not root (no sudo): ask your admin, or load your site's QE" >&2
        exit 2
    fi
    [ "$APT_UPDATED" = 1 ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

qe_dir="${DFPTMAG_QE_BIN:-}"
have_qe() {
    if [ -n "$qe_dir" ]; then
        [ -x "$qe_dir/pw.x" ] && [ -x "$qe_dir/ph.x" ] && [ -x "$qe_dir/ld1.x" ]
    else
        command -v pw.x >/dev/null && command -v ph.x >/dev/null && command -v ld1.x >/dev/null
    fi
}
have_qe || apt_install quantum-espresso
# Debian's QE 6.7 (the suite's reference build) always, for the tests
if [ "$TEST" = 1 ] && [ ! -x /usr/bin/pw.x ]; then apt_install quantum-espresso; fi

if [ "$TEST" = 1 ]; then
    # a one-node Slurm for the cluster-engine tests (started by the test session, no systemd)
    if ! command -v sbatch >/dev/null || ! { command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ]; } \
            || ! { command -v munged >/dev/null || [ -x /usr/sbin/munged ]; }; then
        apt_install slurm-wlm munge
    fi
    # QE 7.x builds shipped beside the project (../shared/qe): unpacked into .qe/<version>/
    shopt -s nullglob
    archives=(../shared/qe/qe-*-x86_64.tgz)
    if [ "${#archives[@]}" -gt 0 ] && [ "$(uname -m)" = x86_64 ]; then
        libs=$(ldconfig -p)
        if ! grep -q libopenblas.so.0 <<<"$libs" || ! grep -q libfftw3.so.3 <<<"$libs"; then
            # keep Debian's QE 6.7 on the BLAS/LAPACK it had: installing OpenBLAS switches the
            # libblas.so.3 alternatives, which changes 6.7's last digits and its reproducibility
            blas=$(readlink /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null || true)
            lapack=$(readlink /etc/alternatives/liblapack.so.3-x86_64-linux-gnu 2>/dev/null || true)
            apt_install libopenblas0-pthread libfftw3-double3 libopenmpi3 libgfortran5
            if [ -n "$blas" ] && [ -e "$blas" ]; then
                $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" >/dev/null || true
            fi
            if [ -n "$lapack" ] && [ -e "$lapack" ]; then
                $SUDO update-alternatives --set liblapack.so.3-x86_64-linux-gnu "$lapack" >/dev/null || true
            fi
        fi
        for a in "${archives[@]}"; do
            v=$(basename "$a" | sed -E 's/^qe-([0-9.]+)-.*/\1/')
            dest=".qe/$v"
            if [ ! -x "$dest/ph.x" ] || [ "$a" -nt "$dest/ph.x" ]; then
                rm -rf "$dest.part" && mkdir -p "$dest.part"
                tar xzf "$a" -C "$dest.part"
                rm -rf "$dest" && mv "$dest.part" "$dest"
            fi
        done
    fi
    # a headless browser for the docs check (tests/test_docs.py: math rendered, figures and links)
    if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
        apt_install chromium
    fi
    # ffmpeg for MP4 movies (dfptmag snapshot --movie mp4; tests/test_libraries.py checks the stream)
    command -v ffmpeg >/dev/null || apt_install --no-install-recommends ffmpeg
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test,docs]"
    python3 -c "import dfptmag, h5py, ase, scipy, tqdm, matplotlib, meshio, PIL, phonopy, pymatgen.core, yaml, sphinx, myst_parser, furo"
else
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e .
fi
python3 -m dfptmag.cli doctor >/dev/null || { python3 -m dfptmag.cli doctor; exit 2; }
echo "dfptmag installed; QE $(python3 -c 'from dfptmag.workflow import qe; print(qe.version_of(qe.program("pw.x")), qe.program("pw.x"))')"
[ "$TEST" = 1 ] && [ -d .qe ] && echo "QE builds for the tests: $(ls .qe | tr '\n' ' ')"
exit 0
