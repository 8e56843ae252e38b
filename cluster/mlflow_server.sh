#!/usr/bin/env bash
# Start the MLflow tracking server on the Ray head (idempotent: does nothing if it already answers).
#
#   bash cluster/mlflow_server.sh gs://BUCKET/gsenet/mlflow [PORT]
#
# Runs store: SQLite in /home/ray/state (a host folder on the head's disk; MLFLOW_BACKEND_URI overrides,
# e.g. postgresql://...).
# Artifacts: proxied to the bucket, so only the head needs GCS write access. Listens on 0.0.0.0 so
# GPU workers reach it at http://HEAD_IP:PORT; the default VPC firewall keeps it off the internet,
# and users reach it through an SSH tunnel (cluster/README.md).
set -euo pipefail

artifacts="${1:?usage: mlflow_server.sh gs://BUCKET/PREFIX [PORT]}"
port="${2:-5000}"
backend="${MLFLOW_BACKEND_URI:-sqlite:////home/ray/state/mlflow.db}"
log="${HOME}/mlflow.log"

healthy() {
    python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://127.0.0.1:${port}/health" >/dev/null 2>&1
}

if [[ "${artifacts}" == *YOUR_BUCKET* ]]; then
    echo "mlflow_server.sh: replace YOUR_BUCKET in cluster/gcp.yaml with your bucket" >&2
    exit 1
fi
if healthy; then
    echo "MLflow already running on port ${port}"
    exit 0
fi

nohup mlflow server --backend-store-uri "${backend}" --artifacts-destination "${artifacts}" \
    --host 0.0.0.0 --port "${port}" >"${log}" 2>&1 &

# First start migrates the database: give it time, then fail loudly with the log.
for _ in $(seq 1 90); do
    if healthy; then
        echo "MLflow on port ${port} (runs: ${backend}, artifacts: ${artifacts}, log: ${log})"
        exit 0
    fi
    sleep 1
done
echo "mlflow_server.sh: MLflow did not answer on port ${port} within 90 s; last log lines:" >&2
tail -n 30 "${log}" >&2
exit 1
