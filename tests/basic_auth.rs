//! Basic authentication per route from an htpasswd file written by Apache's `htpasswd
//! -B` (bcrypt), with curl over HTTP/1.1 and HTTP/2: no or wrong credentials get 401
//! with the realm's challenge and never reach the backend; right ones go through (and
//! are then answered from the cache); a user added to the file while Fulcrum runs can
//! get in a moment later; a non-bcrypt file is a config error naming its line.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Backend, Fulcrum};

fn htpasswd(file: &Path, user: &str, password: &str, create: bool) {
    let mut cmd = Command::new("htpasswd");
    cmd.arg("-b").arg("-B").arg("-C").arg("5");
    if create {
        cmd.arg("-c");
    }
    let out = cmd
        .arg(file)
        .arg(user)
        .arg(password)
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn only_users_of_the_file_reach_the_backend() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    htpasswd(&users, "alice", "s3cret", true);
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\nname = \"private\"\npath_prefix = \"/private\"\npool = \"app\"\n\
         basic_auth = {{ file = \"{}\", realm = \"Staff only\" }}\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        users.display(),
        a.addr
    ));
    let url = f.url("/private/page");
    let status = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.push(&url);
        common::code(&args)
    };
    for h2 in [&[][..], &["--http2-prior-knowledge"][..]] {
        let with = |more: &[&'static str]| [h2, more].concat();
        assert_eq!(status(&with(&[])), "401");
        assert_eq!(status(&with(&["-u", "alice:wrong"])), "401", "{}", f.log());
        assert_eq!(status(&with(&["-u", "mallory:s3cret"])), "401");
        assert_eq!(status(&with(&["-H", "Authorization: Basic !!!"])), "401");
        assert_eq!(status(&with(&["-u", "alice:s3cret"])), "200");
        // Again: from the cache this time.
        assert_eq!(status(&with(&["-u", "alice:s3cret"])), "200");
    }
    assert_eq!(a.requests(), 4, "a refused request reached the backend");
    let (_, head, _) = common::curl(&["-s", "-i", &url]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(
        common::header_of(&head, "www-authenticate").as_deref(),
        Some("Basic realm=\"Staff only\", charset=\"UTF-8\"")
    );
    // Other routes need nothing.
    let out = common::code(&[&f.url("/public")]);
    assert_eq!(out, "200");
    assert!(f.wait_log("denied=auth"));
    // A user added while Fulcrum runs gets in a moment later.
    std::thread::sleep(Duration::from_millis(1100));
    htpasswd(&users, "bob", "hunter2", false);
    let in_time = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        status(&["-u", "bob:hunter2"]) == "200"
    });
    assert!(in_time, "bob was not let in after being added");
}

#[test]
fn a_file_that_is_not_bcrypt_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users"),
        "alice:$apr1$xyz$abcdefghijklmnopqrstuv\n",
    )
    .unwrap();
    let file = dir.path().join("fulcrum.toml");
    std::fs::write(
        &file,
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[[listeners.routes]]\npath = \"/\"\npool = \"app\"\nbasic_auth = { file = \"users\" }\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    )
    .unwrap();
    let out = common::check_file(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("fulcrum.toml:7:23")
            && err.contains("users:1: the hash of `alice` is not bcrypt"),
        "{err}"
    );
}
