#!/usr/bin/env bash
# A local S3-compatible server for gleaner's object-storage tests and for trying s3:// paths
# without a cloud account: moto's server mode (PyPI `moto[server]`), on loopback only.
#
#   scripts/s3-local.sh up      # install moto if needed, start it, create the test bucket
#   scripts/s3-local.sh down    # stop the server this script started
#   scripts/s3-local.sh env     # print the variables that point gleaner (and boto3) at it
#
# State lives under $S3_BASE (default /tmp/gleaner-s3); the port is $S3_PORT (default 5055);
# the bucket is $S3_BUCKET (default gleaner-test). `eval "$(scripts/s3-local.sh env)"` sets
# AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, fake credentials and the region for this shell.
set -euo pipefail

base=${S3_BASE:-/tmp/gleaner-s3}
port=${S3_PORT:-5055}
bucket=${S3_BUCKET:-gleaner-test}
endpoint="http://127.0.0.1:$port"

say() { printf '[s3-local] %s\n' "$*" >&2; }

print_env() {
    cat <<EOF
export AWS_ENDPOINT_URL=$endpoint
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=gleaner-test
export AWS_SECRET_ACCESS_KEY=gleaner-test
export AWS_REGION=us-east-1
export GLEANER_S3_TEST_BUCKET=$bucket
EOF
}

answers() { python3 - "$endpoint" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
except Exception:
    sys.exit(1)
EOF
}

up() {
    mkdir -p "$base"
    if ! python3 -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
        say "installing moto[server] from PyPI"
        python3 -m pip install --quiet 'moto[server]>=5,<6' 2>/dev/null \
            || python3 -m pip install --quiet --break-system-packages 'moto[server]>=5,<6'
    fi
    if answers; then
        say "a server already answers at $endpoint"
    else
        setsid python3 -m moto.server -H 127.0.0.1 -p "$port" >"$base/moto.log" 2>&1 &
        echo $! >"$base/moto.pid"
        for _ in $(seq 100); do answers && break; sleep 0.1; done
        answers || { tail -n 20 "$base/moto.log" >&2; say "error: moto did not start"; exit 1; }
        say "moto answers at $endpoint"
    fi
    eval "$(print_env)"
    python3 - "$endpoint" "$bucket" <<'EOF'
import sys, urllib.request
req = urllib.request.Request(f"{sys.argv[1]}/{sys.argv[2]}", method="PUT")
try:
    urllib.request.urlopen(req, timeout=5)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: the bucket exists already
        raise
EOF
    say "bucket $bucket ready"
}

down() {
    local pid
    pid=$(cat "$base/moto.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    rm -f "$base/moto.pid"
    say "stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) print_env ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
