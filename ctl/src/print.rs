//! ferryctl's `println!` and `eprintln!`, declared first in `main.rs` so
//! every module prints through them.

/// `println!` that ends quietly (exit 0) when the reader has gone away,
/// as with `ferryctl ... | head` (the std one panics), and escapes control
/// characters (server answers and folder names reach every table).
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        if let Err(e) = writeln!(std::io::stdout(), "{}", ferry_api::printable(&text)) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

/// `eprintln!` with control characters escaped, as `println!` above.
macro_rules! eprintln {
    ($($t:tt)*) => {{
        let text = format!($($t)*);
        std::eprintln!("{}", ferry_api::printable(&text));
    }};
}
