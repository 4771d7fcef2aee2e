"""Manages SCRAM users through confluent-kafka's AdminClient (AlterUserScramCredentials and
DescribeUserScramCredentials), as tools built on librdkafka do.

Usage: scram_admin.py BOOTSTRAP ADMIN PASSWORD upsert USER USER_PASSWORD MECHANISM ITERATIONS
       scram_admin.py BOOTSTRAP ADMIN PASSWORD delete USER MECHANISM
       scram_admin.py BOOTSTRAP ADMIN PASSWORD describe [USER]
Prints one JSON line: {"ok": true, ...} or {"error": "NAME", "message": "..."}.
"""

import json
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)


def main():
    bootstrap, admin, password, action, *rest = sys.argv[1:]
    client = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": admin,
            "sasl.password": password,
        }
    )
    try:
        if action == "upsert":
            user, user_password, mechanism, iterations = rest
            info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], int(iterations))
            change = UserScramCredentialUpsertion(user, info, user_password.encode())
            for future in client.alter_user_scram_credentials([change], request_timeout=30).values():
                future.result()
            print(json.dumps({"ok": True}))
        elif action == "delete":
            user, mechanism = rest
            change = UserScramCredentialDeletion(user, ScramMechanism[mechanism.replace("-", "_")])
            for future in client.alter_user_scram_credentials([change], request_timeout=30).values():
                future.result()
            print(json.dumps({"ok": True}))
        elif action == "describe":
            users = rest or None
            described = client.describe_user_scram_credentials(users, request_timeout=30)
            if users is None:
                described = described.result()
            else:
                described = {user: future.result() for user, future in described.items()}
            shown = {
                user: sorted([str(info.mechanism).split(".")[-1], info.iterations] for info in d.scram_credential_infos)
                for user, d in described.items()
            }
            print(json.dumps({"ok": True, "users": shown}))
        else:
            raise SystemExit(f"unknown action {action}")
    except KafkaException as error:
        kafka_error = error.args[0]
        print(json.dumps({"error": kafka_error.name(), "message": kafka_error.str()}))


if __name__ == "__main__":
    main()
