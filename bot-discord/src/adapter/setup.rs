//! What the adapter sets up once when it starts: the development guild's commands.

use bot_core::{Ingress, Platform};
use tokio_util::sync::CancellationToken;

use super::Discord;
use crate::http::CommandSpec;

/// The metric step of the guild command registration.
const STEP: &str = "guild_commands";

/// Commands to register in one guild at start-up, for every application.
#[derive(Debug)]
pub(super) struct GuildCommands {
    pub(super) guild: String,
    pub(super) commands: Vec<CommandSpec>,
    /// Whether a failure stops the adapter.
    pub(super) required: bool,
}

impl Discord {
    /// Registers the guild commands with every application, once; a failure is logged and
    /// counted, and is the adapter's end only when they are required. Shutdown ends it where
    /// it is (a slow or silent API must not hold the bot up).
    pub(super) async fn register_guild_commands(
        &self,
        ingress: &Ingress,
        shutdown: &CancellationToken,
    ) -> Result<(), bot_core::Error> {
        let Some(setup) = &self.commands else {
            return Ok(());
        };
        tokio::select! {
            result = self.register(setup, ingress) => result,
            () = shutdown.cancelled() => {
                tracing::info!(guild = %setup.guild, "discord: shutting down; guild command registration given up");
                Ok(())
            }
        }
    }

    async fn register(
        &self,
        setup: &GuildCommands,
        ingress: &Ingress,
    ) -> Result<(), bot_core::Error> {
        let mut applications: Vec<_> = self.clients.iter().collect();
        applications.sort_unstable_by_key(|(id, _)| id.as_str());
        let mut failure = None;
        for (id, client) in applications {
            let registered = (client.http())
                .register_guild_commands(id.as_str(), &setup.guild, &setup.commands)
                .await;
            let telemetry = ingress.telemetry();
            telemetry.setup_step(&Platform::DISCORD, STEP, registered.is_ok());
            match registered {
                Ok(commands) => tracing::info!(
                    application = %id, guild = %setup.guild, commands = commands.len(),
                    "discord: guild commands registered"
                ),
                Err(error) => {
                    tracing::error!(
                        application = %id, guild = %setup.guild, %error,
                        "discord: guild commands not registered"
                    );
                    failure.get_or_insert((id.clone(), error));
                }
            }
        }
        match failure {
            Some((id, error)) if setup.required => {
                self.stopped_for_good(
                    ingress,
                    "discord guild commands".to_owned(),
                    format!("stopped: application {id}: {error}"),
                );
                Err(error.into())
            }
            _ => Ok(()),
        }
    }
}
