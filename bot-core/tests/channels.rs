//! An event's channel (a LINE channel, a Messenger page, a Discord application): the target of
//! every send its handler makes on the same platform carries it, so the adapter answers through
//! the channel the event came through; a send to another platform does not.

use bot_core::testing::{self, TestBot};
use bot_core::{ChannelId, Context, Error, Event, Platform};

async fn answer_three_ways(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("reply").await?;
    cx.send("U-other", "send").await?;
    cx.send_on(Platform::new("elsewhere"), "C-1", "send_on")
        .await
}

#[tokio::test]
async fn sends_of_a_handler_go_out_through_its_events_channel() {
    let bot = TestBot::builder()
        .platforms([Platform::TEST, Platform::new("elsewhere")])
        .handler(answer_three_ways)
        .build()
        .unwrap();
    let from_b = testing::text("U1", "hi").with_channel("shop-b");
    let plain = testing::text("U2", "hi");
    let (b_id, plain_id) = (from_b.id.clone(), plain.id.clone());
    bot.send(from_b).await.unwrap();
    bot.send(plain).await.unwrap();
    bot.wait_for(6).await;
    bot.idle().await;
    let sent = bot.sent();
    let of_event = |id: &bot_core::EventId| {
        let mut sends = sent
            .iter()
            .filter(|s| s.target.origin.as_ref() == Some(id))
            .map(|s| {
                (
                    s.messages[0].text.clone().unwrap_or_default(),
                    s.target.channel.clone(),
                )
            })
            .collect::<Vec<_>>();
        sends.sort();
        sends
    };
    let b = Some(ChannelId::new("shop-b"));
    assert_eq!(
        of_event(&b_id),
        vec![
            ("reply".to_owned(), b.clone()),
            ("send".to_owned(), b),
            ("send_on".to_owned(), None),
        ]
    );
    let unset = of_event(&plain_id);
    assert_eq!(unset.len(), 3);
    assert!(unset.iter().all(|(_, channel)| channel.is_none()));
}

#[test]
fn the_channel_survives_serialisation_and_is_left_out_when_unset() {
    let event = testing::text("U1", "hi").with_channel("2000000000");
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["channel"], "2000000000");
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back.channel, Some(ChannelId::new("2000000000")));
    let plain = serde_json::to_value(testing::text("U1", "hi")).unwrap();
    assert!(plain.get("channel").is_none());
}
