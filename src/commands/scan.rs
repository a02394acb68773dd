//! `face-enroll scan DIR`: a folder of photos as the CSV manifest `run DIR` reads it as.

use crate::cli::ScanArgs;
use crate::exit::Exit;

use super::fail;

pub fn command(args: ScanArgs) -> Exit {
    if !args.dir.is_dir() {
        return fail(format!("{} is not a folder", args.dir.display()));
    }
    let mut read = crate::manifest::ReadOptions::default();
    read.layout = args.layout.unwrap_or_default();
    match crate::manifest::folder_csv(&args.dir, &read) {
        Ok(csv) => {
            super::print_out(csv);
            Exit::Success
        }
        Err(e) => fail(e),
    }
}
