//! placeholder
use crate::sh::Result;
pub fn run(_args: &[String]) -> Result {
    Ok(())
}
