//! `ferryctl mailbox show`.

use ferry_api::wire::{MailboxShow, MailboxShowAsOf};
use ferry_api::{Client, Request};

use crate::cli::MailboxCmd;
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
    };
    send::print(client, &req, json).await
}
