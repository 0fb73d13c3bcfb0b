"""Reads a mailbox over EWS with exchangelib and prints what it saw as JSON.

Driven by tests/tests/it/ews.rs against the EWS simulator, so a client
nobody here wrote checks the simulator (and, through it, ferry-ews).
Arguments come from the environment: EWS_URL, EWS_LOGIN, EWS_PASSWORD,
EWS_SMTP, EWS_AUTH (NTLM or basic), EWS_ACCESS (delegate, or impersonation
to act for EWS_SMTP); REQUESTS_CA_BUNDLE names the CA.
"""

import hashlib
import json
import os
import sys

from exchangelib import BASIC, DELEGATE, IMPERSONATION, NTLM, Account, Configuration, Credentials
from exchangelib.folders import Folder
from exchangelib.items import Item


def main():
    auth = NTLM if os.environ.get("EWS_AUTH", "NTLM") == "NTLM" else BASIC
    config = Configuration(
        service_endpoint=os.environ["EWS_URL"],
        credentials=Credentials(os.environ["EWS_LOGIN"], os.environ["EWS_PASSWORD"]),
        auth_type=auth,
    )
    account = Account(
        primary_smtp_address=os.environ["EWS_SMTP"],
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION if os.environ.get("EWS_ACCESS") == "impersonation" else DELEGATE,
    )
    out = {
        "api_version": account.version.api_version,
        "build": str(account.version.build),
        "folders": [],
    }
    for folder in account.msg_folder_root.walk():
        entry = {
            "id": folder.id,
            "name": folder.name,
            "class": folder.folder_class,
            "total": folder.total_count,
            "items": [],
        }
        ids = []
        pages = 0
        for change, item in folder.sync_items(only_fields=["id", "changekey"], max_changes_returned=5):
            if change != "create":
                raise SystemExit(f"a first sync only creates, got {change}")
            ids.append((item.id, item.changekey))
        for item in account.fetch(ids, only_fields=["mime_content"]):
            if isinstance(item, Exception):
                raise item
            entry["items"].append(
                {
                    "id": item.id,
                    "sha256": hashlib.sha256(item.mime_content).hexdigest(),
                    "size": len(item.mime_content),
                }
            )
        if folder.folder_class != "IPF.Note" and ids:
            exported = account.export([Item(id=i, changekey=c) for i, c in ids])
            entry["export_sha256"] = [
                hashlib.sha256(__import__("base64").b64decode(e)).hexdigest() for e in exported
            ]
        entry["sync_state"] = bool(folder.item_sync_state)
        out["folders"].append(entry)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
