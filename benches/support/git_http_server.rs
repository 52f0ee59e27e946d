//! A smart-HTTP git server for benchmarks: lighttpd + git-http-backend on 127.0.0.1,
//! basic auth for pushes.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// lighttpd + git-http-backend serving `project_root`; stopped on drop (also on panic).
pub struct HttpServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts lighttpd + git-http-backend serving the bare repositories under `project_root`
/// (reads for anyone; pushes for the `(user, password)` of `push_auth`, or for anyone
/// without it), with its files in `dir`; waits until `<probe_repo>` answers.
pub fn start_http(
    project_root: &Path,
    dir: &Path,
    push_auth: Option<(&str, &str)>,
    probe_repo: &str,
) -> HttpServer {
    const LIGHTTPD: &str = "/usr/sbin/lighttpd";
    assert!(
        Path::new(LIGHTTPD).exists(),
        "{LIGHTTPD} is missing: apt-get install lighttpd (ci/test.sh installs it)"
    );
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("run git --exec-path");
    let gitcore = String::from_utf8(exec_path.stdout)
        .expect("UTF-8 exec path")
        .trim()
        .to_owned();
    fs::create_dir_all(dir.join("www")).expect("create server dir");
    let users = dir.join("users");
    if let Some((user, password)) = push_auth {
        fs::write(&users, format!("{user}:{password}\n")).expect("write users file");
    }
    for _attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free port")
            .port();
        let require = r#"auth.require = ( "" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) )"#;
        // Without push credentials, git-http-backend takes pushes only from repositories
        // with `http.receivepack` set.
        let auth = match push_auth {
            Some(_) => format!(
                "auth.backend = \"plain\"\nauth.backend.plain.userfile = \"{users}\"\n$HTTP[\"querystring\"] =~ \"service=git-receive-pack\" {{ {require} }}\n$HTTP[\"url\"] =~ \"/git-receive-pack$\" {{ {require} }}\n",
                users = users.display()
            ),
            None => String::new(),
        };
        let conf = format!(
            r#"server.modules = ( "mod_auth", "mod_authn_file", "mod_alias", "mod_setenv", "mod_cgi" )
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{www}"
server.errorlog = "{log}"
alias.url = ( "/" => "{gitcore}/git-http-backend/" )
cgi.assign = ( "" => "" )
setenv.add-environment = ( "GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1" )
{auth}"#,
            www = dir.join("www").display(),
            log = dir.join("lighttpd-error.log").display(),
            root = project_root.display(),
        );
        let conf_path = dir.join("lighttpd.conf");
        fs::write(&conf_path, conf).expect("write lighttpd.conf");
        let child = Command::new(LIGHTTPD)
            .arg("-D")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lighttpd");
        let mut server = HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _try in 0..200 {
            if server.child.try_wait().expect("poll lighttpd").is_some() {
                break; // e.g. the port was taken meanwhile: try another one
            }
            if http_status(
                port,
                &format!("/{probe_repo}/info/refs?service=git-upload-pack"),
            ) == Some(200)
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = server.child.kill();
    }
    panic!(
        "lighttpd did not become ready (see {}/lighttpd-error.log)",
        dir.display()
    );
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// 24 random alphanumeric characters.
pub fn random_password() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
        .iter()
        .map(|b| ALNUM[usize::from(*b) % ALNUM.len()] as char)
        .collect()
}
