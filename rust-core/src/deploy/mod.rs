//! Deploys without downtime, below the application: what a generation of the app is (the
//! folder its processes run from: the site root, or a shadow copy of it), how the copy is made
//! and removed, and how a change of the site's files is detected. The switch itself (start,
//! health-gate, swap, drain) is the application's ([`crate::app`]).

pub mod changes;
pub mod shadow;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

pub use changes::Exclusions;

/// One generation of the app: the files its processes run from. A shadow generation copies
/// the site on first use, off the request path (a blocking-pool task), once.
#[derive(Debug)]
pub struct Generation {
    /// 1, 2, 3, … per application.
    pub id: u64,
    /// Its shadow copy's folder, or `None` to run from the site root.
    pub copy: Option<PathBuf>,
    site_root: PathBuf,
    exclusions: Arc<Exclusions>,
    prepared: OnceCell<Result<PathBuf, String>>,
}

impl Generation {
    /// A generation that runs from `copy` (a folder to create from the site), or from the
    /// site root itself.
    pub fn new(
        id: u64,
        site_root: PathBuf,
        copy: Option<PathBuf>,
        exclusions: Arc<Exclusions>,
    ) -> Generation {
        Generation {
            id,
            copy,
            site_root,
            exclusions,
            prepared: OnceCell::new(),
        }
    }

    /// The folder its processes run from, copying the site there first if this generation is
    /// a shadow copy (once; every caller gets that copy's outcome).
    pub async fn root(&self) -> Result<PathBuf, String> {
        self.prepared
            .get_or_init(|| async {
                let Some(copy) = self.copy.clone() else {
                    return Ok(self.site_root.clone());
                };
                let from = self.site_root.clone();
                let excl = self.exclusions.clone();
                let id = self.id;
                let done = tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let n = shadow::copy_tree(&from, &copy, &excl).map_err(|e| {
                        let _ = std::fs::remove_dir_all(&copy);
                        format!(
                            "the shadow copy of {} to {} failed: {e}",
                            from.display(),
                            copy.display()
                        )
                    })?;
                    log::info!(
                        "generation {id}: copied {n} files to {} in {} ms",
                        copy.display(),
                        started.elapsed().as_millis()
                    );
                    Ok(copy)
                })
                .await;
                done.unwrap_or_else(|e| Err(format!("the shadow copy task failed: {e}")))
            })
            .await
            .clone()
    }

    /// Deletes its shadow copy (blocking; its processes must be gone), and the shadow folder
    /// if that leaves it empty. Logs what it could not delete.
    pub fn remove(&self) {
        let Some(copy) = &self.copy else { return };
        let removed = std::fs::remove_dir_all(copy);
        if let Some(base) = copy.parent() {
            // Fails, as it should, while another generation's copy is there.
            let _ = std::fs::remove_dir(base);
        }
        match removed {
            Ok(()) => log::info!(
                "generation {}: removed its copy {}",
                self.id,
                copy.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "generation {}: could not remove its copy {}: {e}",
                self.id,
                copy.display()
            ),
        }
    }
}
