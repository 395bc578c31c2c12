//! The real binary: start-up errors name the key, data survives restarts, the `user`
//! subcommands bootstrap and recover accounts, and the health check works.

use crate::common;

use crate::common::binary::{self, gatehouse_in, start_serve};
use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, free_port};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run gatehouse")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_config_value_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(gatehouse_in(dir.path())
        .arg("serve")
        .env("GATEHOUSE_LOG_FORMAT", "xml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`log.format`") && stderr(&out).contains("GATEHOUSE_LOG_FORMAT"),
        "{}",
        stderr(&out)
    );

    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, "[session]\nidle_timeout_minutes = -5\n").unwrap();
    let out = run(gatehouse_in(dir.path()).args(["--config", file.to_str().unwrap(), "serve"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("session.idle_timeout_minutes"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = run(gatehouse_in(dir.path())
        .arg("serve")
        .env("GATEHOUSE_CONFIG", &file));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lisen"), "{}", stderr(&out));
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created when the config is bad"
    );
}

#[tokio::test]
async fn serve_with_no_config_creates_its_database_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "a-preset-setup-token-for-this-test";

    let mut first = start_serve(dir.path(), port, &[("GATEHOUSE_SETUP_TOKEN", token)]).await;
    assert!(
        dir.path().join("data/gatehouse.db").is_file(),
        "./data/gatehouse.db is created on first run"
    );
    let visitor = common::Visitor::at(format!("127.0.0.1:{port}").parse().unwrap(), token);
    let created = visitor
        .submit_setup("Ada", ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_PASSWORD)
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(
        first.terminate().success(),
        "serve exits cleanly on SIGTERM"
    );

    let mut second = start_serve(dir.path(), port, &[("GATEHOUSE_SETUP_TOKEN", token)]).await;
    let setup = visitor.setup_page(token).await;
    assert_eq!(
        setup.status, 404,
        "the admin from the first run is still there"
    );
    let login = visitor.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        login.status, 303,
        "the admin's password still works after a restart"
    );
    second.terminate();

    let list = run(gatehouse_in(dir.path()).args(["user", "list"]));
    assert!(stdout(&list).contains(ADMIN_EMAIL), "{}", stdout(&list));
}

#[tokio::test]
async fn healthcheck_passes_against_a_running_portal_and_fails_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_serve(dir.path(), port, &[]).await;
    let listen = format!("127.0.0.1:{port}");
    let ok = run(gatehouse_in(dir.path())
        .arg("healthcheck")
        .env("GATEHOUSE_LISTEN", &listen));
    assert!(ok.status.success(), "{}", stderr(&ok));
    server.terminate();
    let down = run(gatehouse_in(dir.path())
        .arg("healthcheck")
        .env("GATEHOUSE_LISTEN", &listen));
    assert!(!down.status.success());
}

#[test]
fn user_commands_bootstrap_and_recover_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let mut add = gatehouse_in(dir.path())
        .args([
            "user",
            "add",
            ADMIN_EMAIL,
            "--admin",
            "--name",
            "Ada",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())
        .unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(!stdout(&added).contains("one-time password"));

    let generated = run(gatehouse_in(dir.path()).args(["user", "add", "bob@example.com"]));
    assert!(generated.status.success());
    assert!(
        stdout(&generated).contains("one-time password: "),
        "a generated password is shown once"
    );

    let duplicate = run(gatehouse_in(dir.path()).args(["user", "add", "BOB@example.com"]));
    assert!(!duplicate.status.success());
    assert!(stderr(&duplicate).contains("already exists"));

    let banned =
        run(gatehouse_in(dir.path()).args(["user", "ban", "bob@example.com", "--reason", "spam"]));
    assert!(banned.status.success(), "{}", stderr(&banned));
    let list = stdout(&run(gatehouse_in(dir.path()).args(["user", "list"])));
    let bob = list
        .lines()
        .find(|l| l.contains("bob@example.com"))
        .unwrap();
    assert!(bob.contains("banned") && bob.contains("user"), "{bob}");
    let ada = list.lines().find(|l| l.contains(ADMIN_EMAIL)).unwrap();
    assert!(ada.contains("admin") && ada.contains("active"), "{ada}");

    assert!(
        run(gatehouse_in(dir.path()).args(["user", "unban", "bob@example.com"]))
            .status
            .success()
    );
    let list = stdout(&run(gatehouse_in(dir.path()).args(["user", "list"])));
    assert!(
        list.lines()
            .find(|l| l.contains("bob@example.com"))
            .unwrap()
            .contains("active")
    );

    assert!(
        run(gatehouse_in(dir.path()).args(["user", "reset-2fa", ADMIN_EMAIL]))
            .status
            .success()
    );
    let passwd = run(gatehouse_in(dir.path()).args(["user", "passwd", ADMIN_EMAIL]));
    assert!(stdout(&passwd).contains("one-time password: "));

    let missing = run(gatehouse_in(dir.path()).args(["user", "ban", "nobody@example.com"]));
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no account"));

    let weak = gatehouse_in(dir.path())
        .args(["user", "add", "weak@example.com", "--password-stdin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"short\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!weak.status.success());
    assert!(stderr(&weak).contains("at least 12"));
}

#[test]
fn migrate_reports_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(gatehouse_in(dir.path()).arg("migrate"));
    assert!(first.status.success());
    assert!(
        stdout(&first).starts_with(&format!("{} migration(s)", gatehouse::db::MIGRATIONS.len()))
    );
    let second = run(gatehouse_in(dir.path()).arg("migrate"));
    assert!(stdout(&second).starts_with("0 migration(s)"));
}

#[test]
fn help_lists_every_subcommand_with_a_description() {
    let dir = tempfile::tempdir().unwrap();
    let help = stdout(&run(gatehouse_in(dir.path()).arg("--help")));
    for sub in [
        "serve",
        "agent",
        "migrate",
        "healthcheck",
        "rotate-key",
        "user",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(sub))
            .unwrap_or_else(|| panic!("{sub} missing:\n{help}"));
        assert!(
            line.split_whitespace().count() > 2,
            "{sub} has no description: {line}"
        );
    }
    let user_help = stdout(&run(gatehouse_in(dir.path()).args(["user", "--help"])));
    for sub in ["add", "passwd", "reset-2fa", "ban", "unban", "list"] {
        assert!(
            user_help.lines().any(|l| l.trim_start().starts_with(sub)),
            "user {sub} missing"
        );
    }
}

#[tokio::test]
async fn passwd_and_reset_2fa_from_the_cli_end_live_sessions() {
    let app = common::TestApp::spawn().await;
    app.add_user("bob@example.com", gatehouse::domain::Role::User)
        .await;
    let bob = app.visitor();
    assert_eq!(
        bob.login("bob@example.com", common::USER_PASSWORD)
            .await
            .status,
        303
    );
    assert_eq!(bob.get("/").await.status, 200);
    let token_of = |bob: &common::Visitor, password: &str| {
        let (bob, password) = (bob.clone(), password.to_string());
        async move {
            common::api::Api::new(
                app.addr,
                Some(&common::api::make_token(&bob, &password, "ci", "write").await),
            )
        }
    };
    let first = token_of(&bob, common::USER_PASSWORD).await;
    assert_eq!(first.get("/api/v1/vhosts").await.status, 200);
    let data_dir = app.state.config.data_dir.to_str().unwrap().to_string();
    let passwd = run(gatehouse_in(app.dir.path())
        .args(["user", "passwd", "bob@example.com"])
        .env("GATEHOUSE_DATA_DIR", &data_dir));
    assert!(passwd.status.success(), "{}", stderr(&passwd));
    assert_eq!(
        bob.get("/").await.header("location"),
        Some("/login?next=%2F")
    );
    assert_eq!(
        first.get("/api/v1/vhosts").await.status,
        401,
        "no token outlives a password reset"
    );

    let new_password = stdout(&passwd)
        .lines()
        .find_map(|l| l.strip_prefix("one-time password: "))
        .unwrap()
        .to_string();
    assert_eq!(
        bob.login("bob@example.com", &new_password).await.status,
        303
    );
    // The generated password signs in once: his own comes first.
    assert_eq!(
        bob.get("/").await.header("location"),
        Some("/account/password")
    );
    let own = "bob's own new passphrase";
    let chosen = bob
        .post_form(
            "/account/password",
            &[("current", &new_password), ("new", own), ("confirm", own)],
        )
        .await;
    assert_eq!(chosen.header("location"), Some("/"), "{}", chosen.body);
    let second = token_of(&bob, own).await;
    assert_eq!(second.get("/api/v1/vhosts").await.status, 200);
    let reset = run(gatehouse_in(app.dir.path())
        .args(["user", "reset-2fa", "bob@example.com"])
        .env("GATEHOUSE_DATA_DIR", &data_dir));
    assert!(reset.status.success());
    assert_eq!(
        bob.get("/").await.header("location"),
        Some("/login?next=%2F")
    );
    assert_eq!(second.get("/api/v1/vhosts").await.status, 401);
    let revoked: Vec<String> = app
        .state
        .db
        .run(|c| gatehouse::db::audit::list(c, Some("api_token_revoked"), None, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(
        revoked,
        [
            "all 1 API token(s): two-factor authentication reset from the command line",
            "all 1 API token(s): password set from the command line",
        ]
    );
}

#[test]
fn the_cli_will_not_ban_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        run(gatehouse_in(dir.path()).args(["user", "add", ADMIN_EMAIL, "--admin"]))
            .status
            .success()
    );
    let out = run(gatehouse_in(dir.path()).args(["user", "ban", ADMIN_EMAIL]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("last active admin"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_stopped_instance_with_everything() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let token = "backup-test-setup-token";
    let mut serving = start_serve(old.path(), port, &[("GATEHOUSE_SETUP_TOKEN", token)]).await;
    let admin = common::Visitor::at(format!("127.0.0.1:{port}").parse().unwrap(), token);
    admin.create_admin().await;
    admin.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let made = admin
        .post_form(
            "/vhosts",
            &[
                ("domain", "kept.example.com"),
                ("template", "raw"),
                ("config", "respond ok"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    assert!(
        run(gatehouse_in(old.path()).args(["user", "add", "bob@example.com"]))
            .status
            .success()
    );

    let file = new.path().join("gatehouse-backup.db");
    let backup = run(gatehouse_in(old.path()).arg("backup").arg(&file));
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert!(
        stdout(&backup).contains("back up the key file"),
        "backup says the key is not in it: {}",
        stdout(&backup)
    );
    assert!(file.is_file());
    let again = run(gatehouse_in(old.path()).arg("backup").arg(&file));
    assert!(
        !again.status.success() && stderr(&again).contains("already exists"),
        "never overwrites"
    );

    // Restoring while a portal answers on the configured address is refused.
    let listen = format!("127.0.0.1:{port}");
    let busy = run(gatehouse_in(new.path())
        .arg("restore")
        .arg(&file)
        .env("GATEHOUSE_LISTEN", &listen));
    assert!(
        !busy.status.success() && stderr(&busy).contains("stop it"),
        "{}",
        stderr(&busy)
    );
    serving.terminate();

    let junk = new.path().join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let refused = run(gatehouse_in(new.path())
        .arg("restore")
        .arg(&junk)
        .env("GATEHOUSE_LISTEN", &listen));
    assert!(
        !refused.status.success(),
        "a file that is not a Gatehouse database is refused"
    );

    let restored = run(gatehouse_in(new.path())
        .arg("restore")
        .arg(&file)
        .env("GATEHOUSE_LISTEN", &listen));
    assert!(restored.status.success(), "{}", stderr(&restored));
    // The backup holds the TOTP secret sealed, not the key: restore says which key it needs,
    // and the key file travels separately.
    let old_key = old.path().join("data/secret.key");
    let key_id = gatehouse::secrets::read_key_file(&old_key)
        .unwrap()
        .id()
        .to_string();
    assert!(
        stdout(&restored).contains(&format!("sealed under key {key_id}"))
            && stdout(&restored).contains("copy the key file"),
        "{}",
        stdout(&restored)
    );
    let key_text = std::fs::read_to_string(&old_key).unwrap();
    let backup_bytes = std::fs::read(&file).unwrap();
    assert!(
        !backup_bytes
            .windows(key_text.trim().len())
            .any(|w| w == key_text.trim().as_bytes()),
        "the backup does not contain the key"
    );
    std::fs::copy(&old_key, new.path().join("data/secret.key")).unwrap();
    let list = stdout(&run(gatehouse_in(new.path()).args(["user", "list"])));
    assert!(
        list.contains(ADMIN_EMAIL) && list.contains("bob@example.com"),
        "{list}"
    );

    let mut back = start_serve(new.path(), port, &[]).await;
    let visitor = common::Visitor::at(listen.parse().unwrap(), "");
    let login = visitor.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        login.header("location"),
        Some("/login/2fa"),
        "the admin and their second factor came back"
    );
    let db = gatehouse::db::Db::open(&new.path().join("data/gatehouse.db")).unwrap();
    let kept = db
        .run(|c| gatehouse::db::vhosts::find_by_domain(c, "kept.example.com"))
        .await
        .unwrap();
    assert!(kept.is_some(), "the site came back");
    back.terminate();
}

#[tokio::test]
async fn serve_writes_plain_log_lines_when_its_output_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut command = binary::serve(dir.path(), port);
    command.stdout(Stdio::null()).stderr(file);
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let mut server = binary::start(&mut command, &healthz, String::new).await;
    // Stopped so that everything it wrote is in the file (how it exits is tested elsewhere).
    server.terminate();
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(
        written.lines().any(|l| l.contains("INFO")),
        "serve logs its start: {written}"
    );
    assert!(
        !written.contains('\x1b'),
        "no colour codes in a file: {written:?}"
    );
}

#[test]
fn user_list_columns_line_up() {
    let dir = tempfile::tempdir().unwrap();
    let long = "someone-with-a-rather-long-address@example.com";
    for email in [long, "bo@x.io"] {
        let added = run(gatehouse_in(dir.path()).args(["user", "add", email]));
        assert!(added.status.success(), "{}", stderr(&added));
    }
    let list = run(gatehouse_in(dir.path()).args(["user", "list"]));
    assert!(list.status.success(), "{}", stderr(&list));
    let out = stdout(&list);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // Every row's cells start where their header does.
    for header in ["EMAIL", "ROLE", "2FA", "STATUS", "NAME"] {
        let at = lines[0].find(header).unwrap();
        for row in &lines[1..] {
            assert!(
                row.len() > at && &row[at - 2..at] == "  " && !row[at..].starts_with(' '),
                "{header} column:\n{out}"
            );
        }
    }
}

/// The shell block under `heading` in the README, as a reader would copy it.
fn readme_block(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find(heading).expect("the heading is in the README")..];
    let start = section.find("```sh\n").expect("a shell block follows") + "```sh\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

#[tokio::test]
async fn the_readmes_agent_commands_print_the_token_the_agent_then_takes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/agent.toml"),
        dir.path().join("config/agent.toml"),
    )
    .unwrap();
    let block = readme_block("## Agents and deploy");
    let port = free_port();
    let out = dir.path().join("out.txt");
    let bin_dir = std::path::Path::new(binary::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    // The README's lines as they stand, run by bash with `gatehouse` on the PATH; only the
    // port and the access log (which need no root here) are set from outside.
    let mut command = Command::new("bash");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
        command.env_remove(key);
    }
    command
        .args(["-c", &block])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("GATEHOUSE_AGENT_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_AGENT_ACCESS_LOG", dir.path().join("access.log"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null());
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so the agent bash started stops with it.
        command.process_group(0);
    }
    let health = format!("http://127.0.0.1:{port}/health");
    let shell = binary::start(&mut command, &health, String::new).await;
    let printed = std::fs::read_to_string(&out).unwrap();
    let token = printed
        .lines()
        .find_map(|l| l.strip_prefix("agent token: "))
        .unwrap_or_else(|| panic!("the token is printed: {printed:?}"))
        .to_string();
    assert!(token.len() >= 32, "{token}");
    let http = reqwest::Client::new();
    let logs = format!("http://127.0.0.1:{port}/logs");
    let with = |token: &str| http.get(&logs).bearer_auth(token).send();
    assert_eq!(
        with(&token).await.unwrap().status(),
        200,
        "the printed token is the agent's"
    );
    assert_eq!(with("not-the-token-at-all").await.unwrap().status(), 401);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("agent.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the token file is the owner's alone");
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", shell.pid())])
        .status();
    drop(shell);
}
