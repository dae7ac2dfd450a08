//! `opml download`: fetch a file from the service, resumable with HTTP
//! Range, with a progress bar.

use super::args::DownloadArgs;
use super::error::CliError;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{Read, Write};

/// What `opml download --json` prints.
#[derive(Debug, Serialize)]
pub struct DownloadReport {
    pub url: String,
    pub out: String,
    /// Bytes already on disk before this download (resumed).
    pub resumed_from: u64,
    pub bytes: u64,
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// The total length in `Content-Range: bytes A-B/LEN` or `bytes */LEN`.
fn total_of(content_range: Option<&str>) -> Option<u64> {
    content_range?.rsplit_once('/')?.1.trim().parse().ok()
}

pub fn download(args: &DownloadArgs) -> Result<DownloadReport, CliError> {
    let have = if args.resume {
        std::fs::metadata(&args.out).map_or(0, |m| m.len())
    } else {
        0
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&args.url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    if let Some(t) = &args.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().map_err(failed)?;
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let content_range = header("content-range");
    let report = |resumed_from, bytes| DownloadReport {
        url: args.url.clone(),
        out: args.out.display().to_string(),
        resumed_from,
        bytes,
    };
    // Nothing left to fetch: the file is already complete.
    if status == 416 && have > 0 && total_of(content_range.as_deref()) == Some(have) {
        return Ok(report(have, have));
    }
    let (append, start) = match status {
        206 if have > 0 => (true, have),
        200 => (false, 0),
        s => {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            let msg = format!("{}: HTTP {s}: {body}", args.url);
            return Err(if (400..500).contains(&s) {
                CliError::BadInput(msg)
            } else {
                CliError::Failed(msg)
            });
        }
    };
    let total = match status {
        206 => total_of(content_range.as_deref()),
        _ => header("content-length").and_then(|v| v.parse().ok()),
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total.unwrap_or(0))
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or(ProgressStyle::default_bar()),
    );
    bar.set_position(start);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&args.out)
        .map_err(failed)?;
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 64 << 10];
    let mut written = start;
    loop {
        let n = reader.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(failed)?;
        written += n as u64;
        bar.set_position(written);
    }
    file.sync_all().map_err(failed)?;
    bar.finish_and_clear();
    if total.is_some_and(|t| t != written) {
        return Err(CliError::Failed(format!(
            "download ended at {written} of {} bytes: run again with --resume",
            total.unwrap_or(0)
        )));
    }
    Ok(report(start, written))
}

/// Human-readable report.
pub fn print(r: &DownloadReport) {
    println!(
        "downloaded  {} bytes to {}{}",
        r.bytes,
        r.out,
        if r.resumed_from > 0 {
            format!(" (resumed at {})", r.resumed_from)
        } else {
            String::new()
        }
    );
}
