//! The engine's gRPC API (`strata.engine.v1`) on a unix socket of mode 0660.

pub mod containers;
pub mod images;
pub mod system;
pub mod volumes;

use std::future::Future;
use std::pin::Pin;

use crate::container::ResolvedImage;

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the container and system services need from the images: an image resolved for a
/// container's snapshot, and unpacked in the current storage driver when it is not yet; and a
/// prune.
pub trait ImageResolver: Send + Sync + 'static {
    /// Resolves `reference` (name, name:tag, id or id prefix) for a new container. Its layers
    /// are not looked for in the storage driver (that would cost every create a round trip):
    /// a snapshot prepared on a chain that is missing fails with
    /// [`crate::container::ContainerError::LayersMissing`], and [`ImageResolver::unpack`]
    /// makes it.
    fn resolve<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<ResolvedImage, tonic::Status>>;

    /// Unpacks the image `id`'s layers in the current storage driver if they are not there;
    /// returns its top chain id.
    fn unpack<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, tonic::Status>>;

    /// Removes dangling images (with `all`: every image no container uses), as `image prune`.
    fn prune(
        &self,
        all: bool,
    ) -> BoxFuture<'_, Result<strata_proto::engine::PruneResponse, tonic::Status>>;
}
