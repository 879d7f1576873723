//! `ancm-register`: adds the ancm-rs module to IIS's `applicationHost.config` and removes it again.
//!
//! The MSI runs `ancm-register install` after copying its files and `ancm-register uninstall`
//! before deleting them (deferred, non-impersonated custom actions, so as LocalSystem). The edit is a
//! text splice ([`edit`]): uninstall after install restores the file byte for byte.
//!
//! It also installs the IIS schema file of the `aspNetCore` section into the `schema` directory
//! beside the configuration file, unless Microsoft's ANCM schema is there (two schema files
//! declaring one section break IIS's configuration system). The MSI cannot make that choice itself:
//! wixl supports neither file searches nor component conditions (see docs/decisions.md).
//!
//! Beside the configuration file the tool keeps two files of its own:
//! - `<config>.ancm-rs.state`: what install added that uninstall could not otherwise tell apart
//!   from what was there before: whether the `aspNetCore` section declaration and the schema file
//!   are ours (Microsoft's ANCM declares the same section). Removed by uninstall.
//! - `<config>.ancm-rs.bak`: the file as it was before the last write by this tool. Kept, so an
//!   administrator can always go back; it is overwritten by the next write.

pub mod edit;

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What went wrong, and so which exit code the command returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read or written.
    Io,
    /// The configuration (or state) file's content is not what this tool understands.
    Content,
}

impl ErrorKind {
    /// The process exit code for this kind (2 is reserved for usage errors).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Io => 1,
            ErrorKind::Content => 3,
        }
    }
}

/// An error naming the file concerned and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Kind of failure.
    pub kind: ErrorKind,
    /// The file concerned.
    pub path: PathBuf,
    /// What was wrong, one line.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for Error {}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error {
        kind: ErrorKind::Io,
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

fn content_error(path: &Path, message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::Content,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The files one run reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `applicationHost.config`.
    pub config: PathBuf,
    /// Where install records what it added (see the crate documentation).
    pub state: PathBuf,
    /// The copy of the configuration taken before each write.
    pub backup: PathBuf,
    /// The temporary file written and then moved over the configuration.
    pub temp: PathBuf,
    /// IIS's schema directory (`config\schema`).
    pub schema_dir: PathBuf,
    /// The schema file to install there; `None` leaves the schema directory alone.
    pub schema_source: Option<PathBuf>,
}

/// The file name of this project's schema in IIS's schema directory.
pub const SCHEMA_FILE: &str = "aspnetcore_rs_schema.xml";

/// Microsoft's ANCM schema files (V2, then V1); each declares `system.webServer/aspNetCore`.
pub const MICROSOFT_SCHEMAS: [&str; 2] = ["aspnetcore_schema_v2.xml", "aspnetcore_schema.xml"];

impl Paths {
    /// The state, backup and temporary files sit next to the configuration file: they then follow
    /// it (a test copy gets its own), and the temporary file is on the same volume, which the
    /// atomic replace needs. The schema directory is IIS's: `schema` beside the configuration.
    /// No schema source is set.
    pub fn beside(config: PathBuf) -> Paths {
        let with_suffix = |suffix: &str| {
            let mut name = config.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        Paths {
            state: with_suffix(".ancm-rs.state"),
            backup: with_suffix(".ancm-rs.bak"),
            temp: with_suffix(".ancm-rs.tmp"),
            schema_dir: config.parent().unwrap_or(Path::new(".")).join("schema"),
            schema_source: None,
            config,
        }
    }
}

/// What the run did, for the one line the command prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether anything was changed (the configuration or the schema file).
    pub changed: bool,
    /// The changes made, in file order.
    pub changes: Vec<String>,
    /// Anything the administrator should know (e.g. a section kept for Microsoft's ANCM).
    pub notes: Vec<String>,
}

/// Registers the module whose DLL is `image` (written as given, e.g. with `%windir%`), and
/// installs the schema file when `paths.schema_source` is set and Microsoft's schema is absent.
///
/// Nothing is changed when the configuration cannot be edited. Side effects happen in an order
/// that leaves no orphan: schema file, configuration (a failure removes a schema file just
/// copied), then the state file.
///
/// `product` is the installing MSI's ProductCode; it is recorded as the registration's owner so
/// that [`uninstall`] run by an older version removed during a major upgrade leaves the new
/// version's registration alone, whatever the order of the two (see [`uninstall`]).
pub fn install(paths: &Paths, image: &str, product: Option<&str>) -> Result<Report, Error> {
    let text = read_config(&paths.config)?;
    let state = read_state(&paths.state)?;
    let outcome =
        edit::install(&text, image).map_err(|e| content_error(&paths.config, e.message))?;
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    // A repeated install keeps the record of an earlier one: the section is still ours.
    let section_added = outcome.section_added || state.section_added;
    if !section_added {
        notes.push(format!(
            "section system.webServer/{} was already declared (Microsoft's ANCM?); it is left as is",
            edit::SECTION_NAME
        ));
    }

    let schema = install_schema(paths, state.schema_added, &mut notes)?;
    if schema.copied {
        changes.push(format!(
            "schema {}",
            paths.schema_dir.join(SCHEMA_FILE).display()
        ));
    }
    let changed = outcome.text != text;
    if changed {
        if let Err(e) = write_config(paths, &text, &outcome.text) {
            if schema.copied && !state.schema_added {
                let _ = fs::remove_file(paths.schema_dir.join(SCHEMA_FILE));
            }
            return Err(e);
        }
    }
    changes.extend(outcome.changes);
    write_state(
        &paths.state,
        &State {
            section_added,
            schema_added: schema.ours,
            // A manual run (no product) keeps the MSI's ownership.
            owner: product.map(str::to_string).or(state.owner),
        },
    )?;
    Ok(Report {
        changed: changed || schema.copied,
        changes,
        notes,
    })
}

/// What [`install_schema`] did.
struct SchemaOutcome {
    /// The schema file in IIS's directory is ours (copied now or by an earlier install).
    ours: bool,
    /// It was written by this call.
    copied: bool,
}

/// Copies the schema into IIS's schema directory unless Microsoft's is there; if Microsoft's has
/// appeared since an earlier install copied ours, removes ours (so a repair of the MSI after
/// installing Microsoft's Hosting Bundle resolves the clash).
fn install_schema(
    paths: &Paths,
    was_ours: bool,
    notes: &mut Vec<String>,
) -> Result<SchemaOutcome, Error> {
    let Some(source) = &paths.schema_source else {
        return Ok(SchemaOutcome {
            ours: was_ours,
            copied: false,
        });
    };
    let target = paths.schema_dir.join(SCHEMA_FILE);
    if let Some(microsoft) = MICROSOFT_SCHEMAS
        .iter()
        .map(|name| paths.schema_dir.join(name))
        .find(|p| p.exists())
    {
        if was_ours {
            remove_if_present(&target)?;
            notes.push(format!(
                "removed {}: {} now declares the section",
                target.display(),
                microsoft.display()
            ));
        } else {
            notes.push(format!(
                "{} declares the section; {SCHEMA_FILE} not installed",
                microsoft.display()
            ));
        }
        return Ok(SchemaOutcome {
            ours: false,
            copied: false,
        });
    }
    let content = fs::read(source).map_err(|e| io_error(source, "cannot read the schema", e))?;
    if fs::read(&target).ok().as_deref() == Some(content.as_slice()) {
        // Already in place (a repeated install); an identical file from elsewhere is adopted.
        return Ok(SchemaOutcome {
            ours: true,
            copied: false,
        });
    }
    fs::write(&target, &content).map_err(|e| io_error(&target, "cannot write the schema", e))?;
    Ok(SchemaOutcome {
        ours: true,
        copied: true,
    })
}

fn remove_if_present(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, "cannot delete", e)),
    }
}

/// Removes what [`install`] added (the schema file only if install put it there), then the state
/// file.
///
/// With `product` (the uninstalling MSI's ProductCode) different from the recorded owner, nothing
/// is removed: another version installed since owns the registration. This happens in a major
/// upgrade when the old version's removal runs after the new version's install (Wine's msiexec
/// does that, without setting UPGRADINGPRODUCTCODE, which the MSI's condition relies on otherwise).
pub fn uninstall(paths: &Paths, product: Option<&str>) -> Result<Report, Error> {
    let text = read_config(&paths.config)?;
    let state = read_state(&paths.state)?;
    if let (Some(me), Some(owner)) = (product, state.owner.as_deref()) {
        if !me.eq_ignore_ascii_case(owner) {
            return Ok(Report {
                changed: false,
                changes: Vec::new(),
                notes: vec![format!(
                    "left in place: the registration belongs to {owner}, installed since by another version"
                )],
            });
        }
    }
    let outcome = edit::uninstall(&text, state.section_added)
        .map_err(|e| content_error(&paths.config, e.message))?;
    let mut notes = Vec::new();
    if outcome.section_kept_for_microsoft {
        notes.push(format!(
            "section system.webServer/{} kept: Microsoft's ANCM is registered and uses it",
            edit::SECTION_NAME
        ));
    }
    let changed = outcome.text != text;
    if changed {
        write_config(paths, &text, &outcome.text)?;
    }
    let mut changes = outcome.changes;
    if state.schema_added {
        let schema = paths.schema_dir.join(SCHEMA_FILE);
        if remove_if_present(&schema)? {
            changes.push(format!("schema {}", schema.display()));
        }
    }
    remove_if_present(&paths.state)?;
    Ok(Report {
        changed: !changes.is_empty(),
        changes,
        notes,
    })
}

fn read_config(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|e| io_error(path, "cannot read", e))?;
    String::from_utf8(bytes).map_err(|e| {
        content_error(
            path,
            format!(
                "not UTF-8 (invalid byte at offset {}); IIS writes this file as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Backs up the old content, writes the new one to a temporary file, flushes it, and moves it over
/// the configuration, so IIS (which watches the file) never sees a half-written file and a crash
/// leaves either the old or the new file.
fn write_config(paths: &Paths, old: &str, new: &str) -> Result<(), Error> {
    fs::write(&paths.backup, old).map_err(|e| io_error(&paths.backup, "cannot write backup", e))?;
    let mut file = fs::File::create(&paths.temp)
        .map_err(|e| io_error(&paths.temp, "cannot create temporary file", e))?;
    file.write_all(new.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&paths.temp, "cannot write temporary file", e))?;
    drop(file);
    replace(&paths.temp, &paths.config).map_err(|e| {
        // Leave no stray temporary file behind a failed replace; the original is untouched.
        let _ = fs::remove_file(&paths.temp);
        io_error(&paths.config, "cannot replace with the edited file", e)
    })
}

/// Moves `from` over `to`. On Windows, `ReplaceFileW` keeps the replaced file's ACL and attributes
/// (a plain rename would give applicationHost.config the temporary file's inherited ACL); it is
/// retried briefly because IIS may hold the file open while it re-reads it.
#[cfg(windows)]
fn replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::{ReplaceFileW, REPLACEFILE_IGNORE_MERGE_ERRORS};
    let wide = |p: &Path| -> Vec<u16> { p.as_os_str().encode_wide().chain(Some(0)).collect() };
    let (from_w, to_w) = (wide(from), wide(to));
    let mut last = std::io::Error::other("not attempted");
    for _ in 0..20 {
        // SAFETY: both strings are NUL-terminated wide strings that outlive the call; the backup
        // name and the two reserved pointers may be null.
        let ok = unsafe {
            ReplaceFileW(
                to_w.as_ptr(),
                from_w.as_ptr(),
                std::ptr::null(),
                REPLACEFILE_IGNORE_MERGE_ERRORS,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if ok != 0 {
            return Ok(());
        }
        last = std::io::Error::last_os_error();
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Err(last)
}

/// Moves `from` over `to`: `rename` is atomic within a file system.
#[cfg(not(windows))]
fn replace(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)
}

/// What install recorded for uninstall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    /// The `aspNetCore` section declaration was added by install (not Microsoft's).
    section_added: bool,
    /// The schema file in IIS's schema directory was put there by install.
    schema_added: bool,
    /// The ProductCode of the MSI whose install made the registration, if any.
    owner: Option<String>,
}

const STATE_HEADER: &str =
    "# ancm-register: what `install` added to the configuration file beside this one; read by `uninstall`.";

fn read_state(path: &Path) -> Result<State, Error> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        // No record: nothing beyond the module entries (always ours by name) is ours.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(io_error(path, "cannot read the state file", e)),
    };
    let mut state = State::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("section_added", "true")) => state.section_added = true,
            Some(("section_added", "false")) => state.section_added = false,
            Some(("schema_added", "true")) => state.schema_added = true,
            Some(("schema_added", "false")) => state.schema_added = false,
            Some(("owner", code)) if !code.is_empty() => state.owner = Some(code.to_string()),
            _ => return Err(content_error(path, format!("unexpected line {line:?}"))),
        }
    }
    Ok(state)
}

fn write_state(path: &Path, state: &State) -> Result<(), Error> {
    let mut text = format!(
        "{STATE_HEADER}\nsection_added={}\nschema_added={}\n",
        state.section_added, state.schema_added
    );
    if let Some(owner) = &state.owner {
        text.push_str(&format!("owner={owner}\n"));
    }
    fs::write(path, text).map_err(|e| io_error(path, "cannot write the state file", e))
}
