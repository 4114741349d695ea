#!/bin/sh
# The CI job's steps (examples/ci/README.md; github-actions.yml runs this file).
#   1. the lock is in the repository: a lab that outgrew it stops the job (exit 2);
#   2. the image is looked up by the digest committed in ci.yml (the CI cache keeps
#      $PROVISION9P_CACHE/images, keyed on build.yml and build.lock) and built only when
#      no cache holds it; a rebuilt image must have that digest again;
#   3. the guests under test boot from it and the lab's checks run (JUnit in report.xml).
# The first run, with no lock and no digest yet, writes build.lock and prints the digest
# to put into ci.yml; commit both.
set -eu
cd "$(dirname "$0")"
p9() { "${PROVISION9P:-provision9p}" "$@"; }

if [ -f build.lock ]; then
    p9 -f build.yml lock
fi

digest=$(sed -n 's/^ *image: *\(sha256:\)\{0,1\}\([0-9a-f]\{64\}\).*/\2/p' ci.yml | head -n 1)
if ! p9 image verify "${digest:-none}"; then
    p9 -f build.yml rootfs build
    p9 -f build.yml lock
    built=$(p9 -f build.yml image build --json |
            python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["digest"][7:])')
    if [ "$built" != "$digest" ]; then
        echo "the image built from build.yml and build.lock is sha256:$built," >&2
        echo "ci.yml names ${digest:-no image}: commit build.lock and put $built into ci.yml" >&2
        exit 1
    fi
fi

status=0
p9 -f ci.yml up --no-verify
p9 -f ci.yml verify --junit report.xml || status=$?
p9 -f ci.yml down
exit "$status"
