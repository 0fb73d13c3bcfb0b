//! `ferryctl mx check|switch`.

use ferry_api::wire::{MxCheck, MxSwitch};
use ferry_api::{Client, Request, Response};

use crate::cli::MxCmd;
use crate::send;

pub async fn run(client: &Client, cmd: MxCmd, json: bool) -> anyhow::Result<i32> {
    let req = match cmd {
        MxCmd::Check { domain } => Request::MxCheck(MxCheck { domain }),
        MxCmd::Switch { domain, to, manual } => Request::MxSwitch(MxSwitch { domain, to, manual }),
    };
    let resp = send::answer(client, &req, json).await?;
    if let Response::MxSwitch(v) = &resp
        && !v.verified
    {
        eprintln!(
            "ferryctl: the switch of {} is recorded, but not every authoritative server answers {} yet",
            v.domain, v.to
        );
        return Ok(2);
    }
    Ok(0)
}
