#!/usr/bin/env bash
# Validates the Dockerfile and docker-compose.yml as far as a machine without a Docker engine
# can: hadolint lints the Dockerfile; `docker-compose config` (v1, which needs no engine) parses
# the compose file and checks it against the Compose schema; a structural check asserts what
# the stack relies on (services, the flags zombi is started with, the bucket, the Trino catalog).
# Nothing is built or started. compat/setup.sh installs the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ZOMBI_CACHE:-$HOME/.cache/zombi}/venv-packaging
for tool in hadolint docker-compose; do
    [ -x "$VENV/bin/$tool" ] || { echo "check-packaging: $VENV/bin/$tool missing (run compat/setup.sh)" >&2; exit 1; }
done

echo "packaging: hadolint Dockerfile"
"$VENV/bin/hadolint" --no-color Dockerfile

echo "packaging: docker-compose config"
resolved=$(mktemp)
trap 'rm -f "$resolved"' EXIT
"$VENV/bin/docker-compose" --project-directory . -f docker-compose.yml config > "$resolved"

echo "packaging: structure"
"$VENV/bin/python" - "$resolved" <<'PY'
import os
import re
import sys

import yaml

compose = yaml.safe_load(open(sys.argv[1]))
raw = yaml.safe_load(open("docker-compose.yml"))
services = compose["services"]
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def mounts(service):
    """(source, target) of each volume, long or short syntax."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            yield volume.get("source", ""), volume.get("target", "")
        else:
            parts = volume.split(":")
            yield (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])


check(set(services) >= {"zombi", "minio", "minio-init", "postgres", "trino"}, f"services: {sorted(services)}")
for name, service in services.items():
    for needed in (service.get("depends_on") or {}):
        check(needed in services, f"{name} depends on unknown service {needed}")
    for source, _ in mounts(service):
        if source.startswith(("/", ".")):
            check(os.path.exists(source), f"{name}: bind mount source {source} does not exist")

zombi = services["zombi"]
command = " ".join(raw["services"]["zombi"]["command"])
for flag in (
    "--object-store s3://zombi/cluster",
    "--s3-endpoint http://minio:9000",
    "--iceberg-catalog postgres://zombi:zombi@postgres:5432/zombi",
):
    check(flag in command, f"zombi is not started with {flag}: {command}")
environment = zombi.get("environment") or {}
for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
    check(variable in environment, f"zombi lacks {variable}")
minio = services["minio"]["environment"]
check(
    (environment.get("AWS_ACCESS_KEY_ID"), environment.get("AWS_SECRET_ACCESS_KEY"))
    == (minio.get("MINIO_ROOT_USER"), minio.get("MINIO_ROOT_PASSWORD")),
    "zombi's S3 credentials are not MinIO's",
)
check(len(str(minio.get("MINIO_ROOT_PASSWORD", ""))) >= 8, "MinIO refuses root passwords under 8 characters")
conditions = {k: v.get("condition") for k, v in (zombi.get("depends_on") or {}).items()}
check(conditions.get("minio-init") == "service_completed_successfully", f"zombi must wait for the bucket: {conditions}")
check(conditions.get("postgres") == "service_healthy", f"zombi must wait for Postgres: {conditions}")
init = " ".join(raw["services"]["minio-init"]["entrypoint"])
check(re.search(r"mc mb [^&]*local/zombi\b", init) is not None, f"minio-init does not create bucket zombi: {init}")
postgres = services["postgres"]["environment"]
check(
    (postgres.get("POSTGRES_USER"), postgres.get("POSTGRES_PASSWORD"), postgres.get("POSTGRES_DB"))
    == ("zombi", "zombi", "zombi"),
    f"Postgres user, password and database must match the catalog URL: {postgres}",
)

catalog_file = "deploy/trino/catalog/zombi.properties"
trino_mounts = dict(mounts(services["trino"]))
check(
    os.path.realpath(trino_mounts.get(os.path.abspath(catalog_file), "")) == "/etc/trino/catalog/zombi.properties",
    f"Trino does not mount {catalog_file} as its catalog zombi: {trino_mounts}",
)
properties = {}
for line in open(catalog_file):
    line = line.strip()
    if line and not line.startswith("#"):
        key, _, value = line.partition("=")
        properties[key.strip()] = value.strip()
expected = {
    "connector.name": "iceberg",
    # zombi's own Iceberg REST catalog, on its HTTP listener (8080 in the compose file).
    "iceberg.catalog.type": "rest",
    "iceberg.rest-catalog.uri": "http://zombi:8080/iceberg",
    "iceberg.rest-catalog.security": "NONE",
    "fs.native-s3.enabled": "true",
    "s3.endpoint": "http://minio:9000",
    "s3.path-style-access": "true",
    "s3.aws-access-key": str(minio.get("MINIO_ROOT_USER")),
    "s3.aws-secret-key": str(minio.get("MINIO_ROOT_PASSWORD")),
}
for key, value in expected.items():
    check(properties.get(key) == value, f"{catalog_file}: {key}={properties.get(key)!r}, expected {value!r}")
check("s3.region" in properties, f"{catalog_file}: native S3 needs s3.region")

if problems:
    print("\n".join(f"packaging: {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"packaging: ok ({len(services)} services)")
PY
