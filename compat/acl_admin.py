"""Manages ACLs through confluent-kafka's AdminClient (CreateAcls, DescribeAcls, DeleteAcls),
as tools built on librdkafka do, authenticated with SCRAM-SHA-256 over SASL_PLAINTEXT.

Usage: acl_admin.py BOOTSTRAP USER PASSWORD create  '[[TYPE, NAME, PATTERN, PRINCIPAL, HOST, OPERATION, PERMISSION], ...]'
       acl_admin.py BOOTSTRAP USER PASSWORD describe '[TYPE, NAME|null, PATTERN, PRINCIPAL|null, HOST|null, OPERATION, PERMISSION]'
       acl_admin.py BOOTSTRAP USER PASSWORD delete   '[[filter], ...]'
Names are Kafka's enum names (TOPIC, PREFIXED, READ, ALLOW; ANY and MATCH in filters).
Prints one JSON line: {"ok": true, "acls": [...]} (sorted bindings; for delete, one list per
filter) or {"error": "NAME", "message": "..."}.
"""

import json
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)


def parts(row):
    kind, name, pattern, principal, host, operation, permission = row
    return (
        ResourceType[kind],
        name,
        ResourcePatternType[pattern],
        principal,
        host,
        AclOperation[operation],
        AclPermissionType[permission],
    )


def shown(binding):
    return [
        binding.restype.name,
        binding.name,
        binding.resource_pattern_type.name,
        binding.principal,
        binding.host,
        binding.operation.name,
        binding.permission_type.name,
    ]


def main():
    bootstrap, user, password, action, argument = sys.argv[1:]
    client = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": password,
        }
    )
    given = json.loads(argument)
    try:
        if action == "create":
            bindings = [AclBinding(*parts(row)) for row in given]
            for future in client.create_acls(bindings, request_timeout=30).values():
                future.result()
            print(json.dumps({"ok": True}))
        elif action == "describe":
            found = client.describe_acls(AclBindingFilter(*parts(given)), request_timeout=30).result()
            print(json.dumps({"ok": True, "acls": sorted(shown(b) for b in found)}))
        elif action == "delete":
            filters = [AclBindingFilter(*parts(row)) for row in given]
            futures = client.delete_acls(filters, request_timeout=30)
            deleted = [sorted(shown(b) for b in futures[f].result()) for f in filters]
            print(json.dumps({"ok": True, "acls": deleted}))
        else:
            raise SystemExit(f"unknown action {action}")
    except KafkaException as error:
        kafka_error = error.args[0]
        print(json.dumps({"error": kafka_error.name(), "message": kafka_error.str()}))


if __name__ == "__main__":
    main()
