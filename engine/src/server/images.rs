//! `strata.engine.v1.Images`, and the image resolver the container service uses.

use std::sync::Arc;

use crate::config::Config;
use crate::container::ResolvedImage;
use crate::daemon::{Parts, ServiceAdder};
use crate::server::{BoxFuture, ImageResolver};

/// Resolves nothing: used until the image store is wired in.
struct NoImages;

impl ImageResolver for NoImages {
    fn resolve<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<ResolvedImage, tonic::Status>> {
        Box::pin(async move {
            Err(tonic::Status::not_found(format!(
                "no such image: {reference}"
            )))
        })
    }
}

/// The image resolver for containers and the image services to serve.
pub fn wire(
    _config: &Config,
    _parts: &Parts,
) -> anyhow::Result<(Arc<dyn ImageResolver>, Vec<ServiceAdder>)> {
    Ok((Arc::new(NoImages), Vec::new()))
}
