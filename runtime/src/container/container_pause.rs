//! `pause` and `resume`: the cgroup freezer.

use super::{Container, ContainerError, Result};
use crate::state::Status;

impl Container {
    /// Freezes every process of the container.
    pub fn pause(&mut self) -> Result<()> {
        let _lock = self.lock()?;
        self.refresh();
        if !matches!(self.state.status, Status::Running | Status::Created) {
            return Err(self.bad_status("pause"));
        }
        let cg = self
            .state
            .cgroup
            .as_ref()
            .ok_or_else(|| ContainerError::Unsupported("the container has no cgroup".into()))?;
        cg.freeze()?;
        self.state.status = Status::Paused;
        Ok(())
    }

    /// Thaws a paused container.
    pub fn resume(&mut self) -> Result<()> {
        let _lock = self.lock()?;
        self.refresh();
        if self.state.status != Status::Paused {
            return Err(self.bad_status("resume"));
        }
        let cg = self
            .state
            .cgroup
            .as_ref()
            .ok_or_else(|| ContainerError::Unsupported("the container has no cgroup".into()))?;
        cg.thaw()?;
        self.refresh();
        Ok(())
    }
}
