//! The connection to `stratad`, and turning its errors into one line for a person.

use std::path::Path;

use strata_proto::engine::containers_client::ContainersClient;
use strata_proto::engine::images_client::ImagesClient;
use strata_proto::engine::system_client::SystemClient;
use strata_proto::engine::volumes_client::VolumesClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// What every command gets: clients on one connection.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
}

/// A failure to report: the message, and the exit code (1 unless a command says otherwise).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 1,
        }
    }

    pub fn with_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        let msg = if s.code() == tonic::Code::Unavailable && s.message().contains("transport") {
            "cannot reach stratad: the connection failed (is stratad running?)".to_string()
        } else {
            s.message().to_string()
        };
        Failure::new(msg)
    }
}

impl Failure {
    /// The engine's refusal of a container to run, with Docker's `run` exit codes: the code the
    /// engine names for a command that is not there (127) or cannot be run (126; in the
    /// status's `strata-exit-code`, the engine's `EXIT_CODE_KEY`), else 125.
    pub fn refused(s: tonic::Status) -> Failure {
        let code = s
            .metadata()
            .get("strata-exit-code")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(125);
        Failure::from(s).with_code(code)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(format!("{e:#}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(e.to_string())
    }
}

/// The result type of commands.
pub type CmdResult<T = ()> = Result<T, Failure>;

impl Client {
    /// Connects to the engine's socket.
    pub async fn connect(address: &Path) -> CmdResult<Client> {
        let path = address.to_path_buf();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        });
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                let cause = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                Failure::new(format!(
                    "cannot connect to stratad at {}: {cause} (is stratad running?)",
                    address.display()
                ))
            })?;
        Ok(Client { channel })
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
    }

    pub fn volumes(&self) -> VolumesClient<Channel> {
        VolumesClient::new(self.channel.clone())
    }
}
