#!/usr/bin/env bash
# Install everything dfptmag needs on a fresh Debian/Ubuntu machine:
# Quantum ESPRESSO 6.7 (Debian package quantum-espresso: pw.x, ph.x, ld1.x, MPI build) and the
# Python package with its test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v pw.x >/dev/null || ! command -v ph.x >/dev/null || ! command -v ld1.x >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq quantum-espresso >/dev/null
fi
# a one-node Slurm for the cluster-engine tests (started by the test session, no systemd)
if ! command -v sbatch >/dev/null || ! { command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ]; } \
        || ! { command -v munged >/dev/null || [ -x /usr/sbin/munged ]; }; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test]"
python3 -c "import dfptmag, h5py, ase, scipy, tqdm, matplotlib, meshio, PIL, phonopy, pymatgen.core, yaml"
command -v pw.x ph.x ld1.x >/dev/null
echo "dfptmag installed; QE: $(command -v pw.x)"
