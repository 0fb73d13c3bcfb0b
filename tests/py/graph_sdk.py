"""Drives the Graph simulator with Microsoft's own SDK (msgraph-sdk and
azure-identity), so the simulator answers what Microsoft's clients expect.

Reads its settings from the environment (GRAPH_SIM_*), signs in with the
client secret or the certificate given, lists folders, creates one message
as received mail and one as a plain create, reads the inbox and runs the
inbox's message delta to its delta link. Prints one JSON object.
"""

import asyncio
import json
import os
import ssl

import httpx
from azure.identity import CertificateCredential, ClientSecretCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.followup_flag import FollowupFlag
from msgraph.generated.models.followup_flag_status import FollowupFlagStatus
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.single_value_legacy_extended_property import (
    SingleValueLegacyExtendedProperty,
)
from msgraph_core import GraphClientFactory

env = os.environ
AUTHORITY = env["GRAPH_SIM_AUTHORITY"]  # host:port
TENANT = env["GRAPH_SIM_TENANT"]
CLIENT_ID = env["GRAPH_SIM_CLIENT_ID"]
GRAPH_URL = env["GRAPH_SIM_GRAPH_URL"]
CA = env["GRAPH_SIM_CA"]
USER = env["GRAPH_SIM_USER"]
RECEIVED = env["GRAPH_SIM_RECEIVED"]


def credential():
    common = dict(authority=AUTHORITY, disable_instance_discovery=True, connection_verify=CA)
    if env.get("GRAPH_SIM_CERT"):
        return CertificateCredential(TENANT, CLIENT_ID, certificate_path=env["GRAPH_SIM_CERT"], **common)
    with open(env["GRAPH_SIM_SECRET_FILE"]) as f:
        secret = f.read().strip()
    return ClientSecretCredential(TENANT, CLIENT_ID, secret, **common)


def message(subject, received=None):
    m = Message(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content="written by msgraph-sdk"),
        from_=Recipient(email_address=EmailAddress(name="SDK", address="sdk@fabrikam.example")),
        to_recipients=[Recipient(email_address=EmailAddress(address=USER))],
        categories=["SDK"],
        flag=FollowupFlag(flag_status=FollowupFlagStatus.Flagged),
    )
    if received:
        m.single_value_extended_properties = [
            SingleValueLegacyExtendedProperty(id="Integer 0x0E07", value="1"),
            SingleValueLegacyExtendedProperty(id="SystemTime 0x0E06", value=received),
            SingleValueLegacyExtendedProperty(id="SystemTime 0x0039", value=received),
        ]
    return m


async def main():
    http = httpx.AsyncClient(verify=ssl.create_default_context(cafile=CA))
    http = GraphClientFactory.create_with_default_middleware(client=http)
    auth = AzureIdentityAuthenticationProvider(
        credential(), scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["127.0.0.1"]
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = GRAPH_URL
    client = GraphServiceClient(request_adapter=adapter)
    user = client.users.by_user_id(USER)

    folders = []
    page = await user.mail_folders.get()
    while True:
        folders += [{"id": f.id, "displayName": f.display_name, "children": f.child_folder_count} for f in page.value]
        if not page.odata_next_link:
            break
        page = await user.mail_folders.with_url(page.odata_next_link).get()

    inbox = await user.mail_folders.by_mail_folder_id("inbox").get()
    received = await user.mail_folders.by_mail_folder_id(inbox.id).messages.post(message("sdk received", RECEIVED))
    plain = await user.mail_folders.by_mail_folder_id(inbox.id).messages.post(message("sdk plain"))

    messages = []
    page = await user.mail_folders.by_mail_folder_id(inbox.id).messages.get()
    while True:
        for m in page.value:
            messages.append(
                {
                    "id": m.id,
                    "subject": m.subject,
                    "isRead": m.is_read,
                    "isDraft": m.is_draft,
                    "categories": m.categories,
                    "flag": m.flag.flag_status.value if m.flag and m.flag.flag_status else None,
                    "received": m.received_date_time.isoformat() if m.received_date_time else None,
                }
            )
        if not page.odata_next_link:
            break
        page = await user.mail_folders.by_mail_folder_id(inbox.id).messages.with_url(page.odata_next_link).get()

    delta_ids = []
    delta = user.mail_folders.by_mail_folder_id(inbox.id).messages.delta
    page = await delta.get()
    pages = 1
    while True:
        delta_ids += [m.id for m in page.value]
        if page.odata_next_link:
            page = await delta.with_url(page.odata_next_link).get()
            pages += 1
            continue
        delta_link = page.odata_delta_link
        break

    print(
        json.dumps(
            {
                "inbox": inbox.id,
                "folders": folders,
                "received": received.id,
                "receivedIsDraft": received.is_draft,
                "plain": plain.id,
                "plainIsDraft": plain.is_draft,
                "messages": messages,
                "deltaIds": delta_ids,
                "deltaPages": pages,
                "deltaLink": delta_link,
            }
        )
    )


asyncio.run(main())
