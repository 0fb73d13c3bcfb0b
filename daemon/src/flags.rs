//! ferryd's flags, read with lexopt so the daemon carries no CLI framework.
//! The help, version and error texts are the ones ferryd has always shown.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Where the event log, snapshots and secrets live.
    pub data_dir: Option<PathBuf>,
    /// The control socket.
    pub socket: Option<PathBuf>,
    /// A TOML configuration file; re-read on SIGHUP.
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// The event log in PostgreSQL, for a fleet of workers.
    pub store: Option<String>,
    /// `import-log`: move the data directory's log into `store`, then exit.
    pub import_log: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Flags),
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
}

/// A refused command line: print on stderr, exit 2.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

/// A flag that takes a path, with its environment variable.
struct PathFlag {
    name: &'static str,
    shown: &'static str,
    env: Option<&'static str>,
}

const DATA_DIR: PathFlag = PathFlag {
    name: "data-dir",
    shown: "--data-dir <DATA_DIR>",
    env: Some("FERRY_DATA_DIR"),
};
const SOCKET: PathFlag = PathFlag {
    name: "socket",
    shown: "--socket <SOCKET>",
    env: Some("FERRY_SOCKET"),
};
const CONFIG: PathFlag = PathFlag {
    name: "config",
    shown: "--config <CONFIG>",
    env: None,
};
const STORE: PathFlag = PathFlag {
    name: "store",
    shown: "--store <URL>",
    env: None,
};

/// Every long flag as a usage line shows it, for the "similar argument" tip.
const LONG: [(&str, &str); 7] = [
    (DATA_DIR.name, DATA_DIR.shown),
    (SOCKET.name, SOCKET.shown),
    (CONFIG.name, CONFIG.shown),
    (STORE.name, STORE.shown),
    ("log-json", "--log-json"),
    ("help", "--help"),
    ("version", "--version"),
];

const MORE: &str = "For more information, try '--help'.\n";

/// Reads `args` (the program name first); `env` looks variables up.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Parsed, Refused> {
    use lexopt::Arg::{Long, Short, Value};
    let mut p = lexopt::Parser::from_iter(args);
    let bin = p
        .bin_name()
        .and_then(|b| std::path::Path::new(b).file_name())
        .map_or("ferryd".into(), |b| b.to_string_lossy().into_owned());
    let usage = |shown: &str| format!("Usage: {bin} {shown}\n\n{MORE}");
    let mut flags = Flags::default();
    let mut log_json = false;
    let mut store: Option<PathBuf> = None;
    loop {
        let arg = match p.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(Refused(format!("error: {e}\n\n{}", usage("[OPTIONS]")))),
        };
        let (slot, flag) = match arg {
            Short('h') | Long("help") => return Ok(Parsed::Print(help(&bin, &env))),
            Short('V') | Long("version") => {
                return Ok(Parsed::Print(format!(
                    "ferryd {}\n",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            Long("log-json") => {
                if let Some(v) = p.optional_value() {
                    return Err(Refused(format!(
                        "error: unexpected value '{}' for '--log-json' found; no more were expected\n\n{}",
                        v.to_string_lossy(),
                        usage("--log-json")
                    )));
                }
                if log_json {
                    return Err(Refused(format!(
                        "error: the argument '--log-json' cannot be used multiple times\n\n{}",
                        usage("[OPTIONS]")
                    )));
                }
                log_json = true;
                continue;
            }
            Long("data-dir") => (&mut flags.data_dir, &DATA_DIR),
            Long("socket") => (&mut flags.socket, &SOCKET),
            Long("config") => (&mut flags.config, &CONFIG),
            Long("store") => (&mut store, &STORE),
            Long(name) => {
                let name = name.to_string();
                return Err(unexpected(&format!("--{name}"), similar(&name), &usage));
            }
            Short(c) => return Err(unexpected(&format!("-{c}"), None, &usage)),
            Value(v) if v == "import-log" && !flags.import_log => {
                flags.import_log = true;
                continue;
            }
            Value(v) => return Err(unexpected(&v.to_string_lossy(), None, &usage)),
        };
        // As clap did: a value is attached (`--flag=V`) or the next word,
        // unless that word is itself a flag.
        let value = match p.optional_value() {
            Some(v) => Some(v),
            None => p
                .raw_args()
                .ok()
                .and_then(|mut raw| raw.next_if(|a| !is_flag(a))),
        };
        let value = value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| required(flag))?;
        if slot.is_some() {
            return Err(Refused(format!(
                "error: the argument '{}' cannot be used multiple times\n\n{}",
                flag.shown,
                usage("[OPTIONS]")
            )));
        }
        *slot = Some(value.into());
    }
    flags.log_json = log_json;
    flags.store = store.map(|s| s.to_string_lossy().into_owned());
    for (slot, flag) in [
        (&mut flags.data_dir, &DATA_DIR),
        (&mut flags.socket, &SOCKET),
    ] {
        if slot.is_none()
            && let Some(v) = flag.env.and_then(&env)
        {
            if v.is_empty() {
                return Err(required(flag));
            }
            *slot = Some(v.into());
        }
    }
    Ok(Parsed::Run(flags))
}

fn is_flag(arg: &OsStr) -> bool {
    arg.as_encoded_bytes().starts_with(b"-") && arg != "-"
}

fn required(flag: &PathFlag) -> Refused {
    Refused(format!(
        "error: a value is required for '{}' but none was supplied\n\n{MORE}",
        flag.shown
    ))
}

fn unexpected(arg: &str, tip: Option<&str>, usage: &dyn Fn(&str) -> String) -> Refused {
    let (tip, shown) = match tip {
        Some(t) => {
            let flag = t.split(' ').next().unwrap_or(t);
            (format!("  tip: a similar argument exists: '{flag}'\n\n"), t)
        }
        None => (String::new(), "[OPTIONS]"),
    };
    Refused(format!(
        "error: unexpected argument '{arg}' found\n\n{tip}{}",
        usage(shown)
    ))
}

/// A long flag that `name` abbreviates or misspells by a letter's end.
fn similar(name: &str) -> Option<&'static str> {
    LONG.iter()
        .find(|(long, _)| !name.is_empty() && (long.starts_with(name) || name.starts_with(long)))
        .map(|(_, shown)| *shown)
}

fn help(bin: &str, env: &dyn Fn(&str) -> Option<OsString>) -> String {
    let shown = |name: &str| env(name).map(|v| v.to_string_lossy().into_owned());
    format!(
        "The mailferry migration daemon

Usage: {bin} [OPTIONS]
       {bin} import-log --data-dir <DATA_DIR> --store <URL>

Commands:
  import-log  Move the data directory's event log into an empty PostgreSQL store, checking its chain, and exit

Options:
      --data-dir <DATA_DIR>  Where the event log, snapshots and secrets live [env: FERRY_DATA_DIR={}]
      --socket <SOCKET>      The control socket (default from FERRY_SOCKET, then the built-in path) [env: FERRY_SOCKET={}]
      --config <CONFIG>      A TOML configuration file; re-read on SIGHUP
      --store <URL>          The event log in PostgreSQL (postgres://USER@HOST/DB), shared by a fleet; a password belongs in the config file's store, not here
      --log-json             Log as JSON lines instead of text
  -h, --help                 Print help
  -V, --version              Print version
",
        shown("FERRY_DATA_DIR").unwrap_or_default(),
        shown("FERRY_SOCKET").unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Parsed, Refused> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(
            std::iter::once("ferryd")
                .chain(args.iter().copied())
                .map(OsString::from),
            move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.into()),
        )
    }

    fn refused(args: &[&str]) -> String {
        run(args, &[]).unwrap_err().0
    }

    #[test]
    fn flags_and_environment() {
        let Ok(Parsed::Run(f)) = run(
            &["--data-dir", "/d", "--config=/c.toml", "--log-json"],
            &[("FERRY_SOCKET", "/s"), ("FERRY_DATA_DIR", "/ignored")],
        ) else {
            panic!("refused")
        };
        assert_eq!(
            f,
            Flags {
                data_dir: Some("/d".into()),
                socket: Some("/s".into()),
                config: Some("/c.toml".into()),
                log_json: true,
                store: None,
                import_log: false,
            }
        );
        assert_eq!(run(&[], &[]), Ok(Parsed::Run(Flags::default())));
        let Ok(Parsed::Run(f)) = run(&["--store", "postgres://ferry@db/log"], &[]) else {
            panic!("refused")
        };
        assert_eq!(f.store.as_deref(), Some("postgres://ferry@db/log"));
        let Ok(Parsed::Run(f)) = run(&["import-log", "--data-dir", "/d"], &[]) else {
            panic!("refused")
        };
        assert!(f.import_log && f.data_dir.is_some());
        assert!(refused(&["import-log", "import-log"]).contains("unexpected argument"));
    }

    #[test]
    fn help_and_version() {
        let Ok(Parsed::Print(h)) = run(&["--help", "--bogus"], &[("FERRY_DATA_DIR", "/x")]) else {
            panic!("no help")
        };
        assert!(h.starts_with("The mailferry migration daemon\n\nUsage: ferryd [OPTIONS]\n"));
        assert!(h.contains("live [env: FERRY_DATA_DIR=/x]\n"), "{h}");
        assert_eq!(
            run(&["-V"], &[]),
            Ok(Parsed::Print(format!(
                "ferryd {}\n",
                env!("CARGO_PKG_VERSION")
            )))
        );
    }

    #[test]
    fn refusals_read_as_before() {
        assert_eq!(
            refused(&["--bogus", "--help"]),
            "error: unexpected argument '--bogus' found\n\nUsage: ferryd [OPTIONS]\n\nFor more information, try '--help'.\n"
        );
        assert_eq!(
            refused(&["--data"]),
            "error: unexpected argument '--data' found\n\n  tip: a similar argument exists: '--data-dir'\n\nUsage: ferryd --data-dir <DATA_DIR>\n\nFor more information, try '--help'.\n"
        );
        assert_eq!(
            refused(&["--data-dir", "--socket", "/s"]),
            "error: a value is required for '--data-dir <DATA_DIR>' but none was supplied\n\nFor more information, try '--help'.\n"
        );
        assert!(refused(&["--config="]).starts_with("error: a value is required for '--config"));
        assert!(refused(&["extra"]).starts_with("error: unexpected argument 'extra' found\n"));
        assert!(refused(&["-x"]).starts_with("error: unexpected argument '-x' found\n"));
        assert!(refused(&["--log-json=yes"]).starts_with(
            "error: unexpected value 'yes' for '--log-json' found; no more were expected\n\nUsage: ferryd --log-json\n"
        ));
        assert!(refused(&["--socket", "a", "--socket", "b"]).starts_with(
            "error: the argument '--socket <SOCKET>' cannot be used multiple times\n"
        ));
        let empty_env = run(&[], &[("FERRY_DATA_DIR", "")]).unwrap_err().0;
        assert!(empty_env.starts_with("error: a value is required for '--data-dir <DATA_DIR>'"));
    }
}
