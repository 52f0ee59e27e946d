//! A minimal blocking HTTP/1.1 client for the server benchmarks: one keep-alive
//! connection, `GET` only, bodies by `Content-Length` or chunked.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

/// One keep-alive connection to a server.
pub struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    auth: String,
}

impl Client {
    /// Connects to `addr`; every request carries `Authorization: <auth>`.
    pub fn connect(addr: SocketAddr, auth: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            addr,
            reader: BufReader::new(stream),
            auth: auth.to_owned(),
        }
    }

    /// `GET path`: the status and the body.
    pub fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nAccept: */*\r\n\r\n",
            self.addr, self.auth
        );
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: bad status line {line:?}"));
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or_else(|_| panic!("GET {path}: bad chunk size {line:?}"));
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..]).unwrap();
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.unwrap_or_else(|| panic!("GET {path}: no Content-Length"));
            body.resize(n, 0);
            self.reader.read_exact(&mut body).unwrap();
        }
        (status, body)
    }
}
