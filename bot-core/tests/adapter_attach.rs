//! `Adapter::attach`: called once per adapter when the bot is built, after its telemetry and
//! ingress exist and before the bot asks the adapter for anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bot_core::adapter::Clients;
use bot_core::{Adapter, Attach, Bot, Context, Error, ErrorKind, Event, Platform};

#[derive(Debug)]
struct Probe {
    attached: Arc<AtomicUsize>,
    asked_before_attach: Arc<AtomicUsize>,
    refuse: bool,
}

impl Adapter for Probe {
    fn platform(&self) -> Platform {
        Platform::TEST
    }

    fn attach(&mut self, bot: &Attach) -> Result<(), Error> {
        assert!(bot.ingress().is_accepting());
        // The telemetry is the bot's own: what the adapter records shows in its metrics.
        bot.telemetry().outbound_request(&Platform::TEST, "200");
        if self.refuse {
            return Err(Error::new(ErrorKind::Config, "probe: refused"));
        }
        self.attached.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn register_clients(&self, _clients: &mut Clients) {
        if self.attached.load(Ordering::SeqCst) == 0 {
            self.asked_before_attach.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn noop(_cx: Context, _event: Event) -> Result<(), Error> {
    Ok(())
}

#[test]
fn attach_comes_once_before_anything_else_and_its_error_stops_the_build() {
    let attached = Arc::new(AtomicUsize::new(0));
    let asked_before_attach = Arc::new(AtomicUsize::new(0));
    let bot = Bot::builder()
        .adapter(Probe {
            attached: attached.clone(),
            asked_before_attach: asked_before_attach.clone(),
            refuse: false,
        })
        .handler(noop)
        .build()
        .unwrap();
    assert_eq!(attached.load(Ordering::SeqCst), 1);
    assert_eq!(asked_before_attach.load(Ordering::SeqCst), 0);
    #[cfg(feature = "prometheus")]
    assert!(
        bot.telemetry()
            .render_prometheus()
            .contains("bot_outbound_requests_total{"),
        "recorded in the bot's telemetry"
    );
    drop(bot);

    let refused = Bot::builder()
        .adapter(Probe {
            attached: Arc::new(AtomicUsize::new(0)),
            asked_before_attach: Arc::new(AtomicUsize::new(0)),
            refuse: true,
        })
        .handler(noop)
        .build()
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Config);
    assert!(refused.to_string().contains("probe: refused"));
}
