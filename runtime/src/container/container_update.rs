//! `update`: change the resource limits of a running container.

use oci_spec::runtime::LinuxResources;

use super::{Container, ContainerError, Result};
use crate::state::Status;

impl Container {
    /// Applies new limits to the container's cgroup. Device rules cannot be changed this way
    /// (on cgroup v2 a second device program could only narrow the first), and are refused.
    pub fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        let _lock = self.lock()?;
        self.refresh();
        if self.state.status == Status::Stopped {
            return Err(self.bad_status("update"));
        }
        if resources.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(ContainerError::Unsupported(
                "device rules cannot be updated on a running container".into(),
            ));
        }
        let cg = self
            .state
            .cgroup
            .as_ref()
            .ok_or_else(|| ContainerError::Unsupported("the container has no cgroup".into()))?;
        cg.apply(resources)?;
        Ok(())
    }
}
