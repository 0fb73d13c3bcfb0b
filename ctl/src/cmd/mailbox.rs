//! `ferryctl mailbox show|set-credentials`.

use ferry_api::wire::{MailboxSetCredentials, MailboxShow, MailboxShowAsOf};
use ferry_api::{Client, Request};

use crate::cli::MailboxCmd;
use crate::files::read_secret;
use crate::send;

pub async fn run(client: &Client, cmd: MailboxCmd, json: bool) -> anyhow::Result<i32> {
    let req = match cmd {
        MailboxCmd::Show {
            address,
            as_of: None,
        } => Request::MailboxShow(MailboxShow { address }),
        MailboxCmd::Show {
            address,
            as_of: Some(time),
        } => Request::MailboxShowAsOf(MailboxShowAsOf { address, time }),
        MailboxCmd::SetCredentials {
            address,
            source_login,
            source_password_file,
            destination_login,
            destination_password_file,
        } => Request::MailboxSetCredentials(MailboxSetCredentials {
            address,
            source_login,
            source_password: source_password_file.map(|f| read_secret(&f)).transpose()?,
            destination_login,
            destination_password: destination_password_file
                .map(|f| read_secret(&f))
                .transpose()?,
        }),
    };
    send::print(client, &req, json).await
}
