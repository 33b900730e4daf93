//! The processes a run starts (Prosody, the webhook) and small helpers around them.

use crate::*;

// ---------------------------------------------------------------- helpers

pub(crate) fn now_stamp() -> (String, String) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as libc::time_t;
    // SAFETY: gmtime_r writes into the tm we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    let file = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    let iso = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    (file, iso)
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Children die with us even if we are killed without a chance to clean up.
pub(crate) fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Run a command to completion with a time limit, output appended to `log`.
pub(crate) fn run_logged(cmd: &mut Command, log: &Path, limit: Duration) -> Result<(), String> {
    let f = fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    let mut child =
        die_with_parent(cmd.stdin(Stdio::null()).stdout(f).stderr(f2)).spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return if st.success() { Ok(()) } else { Err(format!("{cmd:?} exited with {st}")) };
        }
        if t0.elapsed() > limit || stopping() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} killed after {:?}", t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn tail(path: &Path, n: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn kill_and_reap(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------- webhook

#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
pub(crate) struct WebhookStats {
    pub(crate) accepted: u64,
    pub(crate) active: u64,
    pub(crate) requests: u64,
    pub(crate) replies: u64,
    pub(crate) no_body: u64,
    pub(crate) bad: u64,
    pub(crate) closed_by_peer: u64,
    pub(crate) closed_by_us: u64,
}

pub(crate) struct Webhook {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: BufReader<ChildStdout>,
    pub(crate) addr: SocketAddr,
}

impl Webhook {
    pub(crate) fn start(bin: &Path, log: &Path) -> Result<Webhook, String> {
        let err = fs::File::create(log).map_err(|e| e.to_string())?;
        let mut child = die_with_parent(Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err))
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("webhook said {line:?}"))?;
        Ok(Webhook { child, stdin, stdout, addr })
    }

    pub(crate) fn stats(&mut self) -> WebhookStats {
        let mut line = String::new();
        if self.stdin.write_all(b"stats\n").and_then(|_| self.stdin.flush()).is_err()
            || self.stdout.read_line(&mut line).is_err()
        {
            return WebhookStats::default();
        }
        serde_json::from_str(line.trim()).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------- prosody

pub(crate) struct Prosody {
    pub(crate) child: Child,
}

impl Prosody {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, Duration::from_secs(10));
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct SetupPlan {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) description: String,
    /// Plugin directory (null/other) or LuaRocks tree (module).
    pub(crate) plugin_dir: Option<PathBuf>,
    pub(crate) module_name: String,
}

pub(crate) struct SetupEnv {
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) c2s_port: u16,
}

pub(crate) fn write_config(
    plan: &SetupPlan,
    env: &SetupEnv,
    webhook: SocketAddr,
    tree: Option<&Path>,
    opts: &Opts,
) -> std::io::Result<()> {
    // The configuration comes from scripts/prosody_config.py, the generator the demo, the tests
    // and the soak share; only what differs for a setup is said here.
    let d = &env.dir;
    let path = |x: &Path| x.display().to_string();
    let mut plugin_paths: Vec<String> = vec![];
    let mut modules = vec!["saslauth"];
    let mut globals = serde_json::json!({ "modules_disabled": ["s2s", "s2s_auth_certs", "offline"] });
    if plan.kind != "module" || tree.is_none() {
        plugin_paths.extend(plan.plugin_dir.as_deref().map(path));
    }
    if opts.lua_profile {
        plugin_paths.push(path(&opts.repo.join("bench").join("tools")));
        modules.push("bench_luaprof");
        globals["bench_luaprof_output"] = path(&d.join("luaprof.txt")).into();
    }
    let mut component = serde_json::json!({ "component_post_url": format!("http://{webhook}/hook") });
    if plan.kind == "null" {
        component["bench_null_reply"] = opts.null_reply.clone().into();
    }
    let extra = opts.prosody_extra.as_ref().map(|e| format!("-- --prosody-extra:\n{e}\n")).unwrap_or_default();
    let spec = serde_json::json!({
        "state_dir": path(d),
        "c2s_port": env.c2s_port,
        "plugin_tree": if plan.kind == "module" { tree.map(path) } else { None },
        "plugin_paths": plugin_paths,
        "log": path(&env.log),
        "modules_enabled": modules,
        "globals": globals,
        "extra_lua": extra,
        "comment": format!("generated by bench/ for setup {:?}; loopback only", plan.name),
        "components": { COMPONENT: component },
        "component_module": plan.module_name,
    });
    let mut generator = Command::new("python3")
        .arg(opts.repo.join("scripts").join("prosody_config.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    generator.stdin.take().expect("piped stdin").write_all(spec.to_string().as_bytes())?;
    let out = generator.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("scripts/prosody_config.py failed"));
    }
    fs::create_dir_all(d.join("certs"))?;
    fs::write(&env.config, out.stdout)
}

pub(crate) fn start_prosody(env: &SetupEnv) -> Result<Prosody, String> {
    let out = fs::File::create(env.dir.join("prosody.stdout")).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = die_with_parent(
        Command::new("prosody")
            .arg("--config")
            .arg(&env.config)
            .arg("-F")
            .current_dir(&env.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    )
    .spawn()
    .map_err(|e| format!("starting prosody: {e}"))?;
    let mut p = Prosody { child };
    let addr: SocketAddr = ([127, 0, 0, 1], env.c2s_port).into();
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Err(format!(
                "prosody exited early ({st}):\n{}\n{}",
                tail(&env.dir.join("prosody.stdout"), 20),
                tail(&env.log, 20)
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(p);
        }
        if t0.elapsed() > Duration::from_secs(30) || stopping() {
            kill_and_reap(&mut p.child, Duration::from_secs(2));
            return Err(format!("prosody did not open c2s port {} in 30s:\n{}", env.c2s_port, tail(&env.log, 20)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- records
