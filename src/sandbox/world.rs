//! The sandbox's small world: pages with customers and conversation histories, and faults a
//! test can inject. Times are Unix seconds.

use std::collections::VecDeque;

/// One message as Meta stores it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub from: String,
    pub to: String,
    pub created: i64,
    pub text: Option<String>,
    pub image_url: Option<String>,
    pub sticker: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub customer: String,
    /// Oldest first.
    pub messages: Vec<Message>,
}

impl Conversation {
    pub fn updated(&self) -> i64 {
        self.messages.last().map_or(0, |m| m.created)
    }
}

/// A failure the sandbox answers with instead of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the call is answered; it puts a later fault onto a later call.
    Pass,
    /// HTTP 400 with Graph error code 613 (calls within one hour exceeded).
    Throttled,
    /// HTTP 500 with Graph error code 2 (service temporarily unavailable).
    ServerError,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub id: String,
    pub name: String,
    pub category: String,
    pub token: String,
    pub subscribed: bool,
    /// Every call with this page's token answers code 190, subcode 492.
    pub revoked: bool,
    /// Popped one per call with this page's token, before answering.
    pub faults: VecDeque<Fault>,
    pub conversations: Vec<Conversation>,
}

impl Page {
    pub fn new(id: &str, name: &str, token: &str) -> Page {
        Page {
            id: id.into(),
            name: name.into(),
            category: "Shopping & retail".into(),
            token: token.into(),
            subscribed: false,
            revoked: false,
            faults: VecDeque::new(),
            conversations: Vec::new(),
        }
    }

    /// Adds a conversation of `count` alternating customer/page messages, one a minute from
    /// `start`; every fifth customer message is a photo, every seventh a sticker.
    pub fn with_conversation(mut self, customer: &str, count: usize, start: i64) -> Page {
        let n = self.conversations.len();
        let messages = (0..count)
            .map(|i| {
                let from_customer = i % 2 == 0;
                let (from, to) = if from_customer {
                    (customer, self.id.as_str())
                } else {
                    (self.id.as_str(), customer)
                };
                let photo = from_customer && i % 10 == 4;
                let sticker = from_customer && i % 14 == 6;
                Message {
                    id: format!("m_{}_{customer}_{i:04}", self.id),
                    from: from.into(),
                    to: to.into(),
                    created: start + 60 * i as i64,
                    text: (!photo && !sticker).then(|| format!("message {i} of {customer}")),
                    image_url: photo.then(|| format!("/cdn/{customer}/{i}.jpg")),
                    sticker: sticker.then(|| "/cdn/sticker/369239263222822.png".to_string()),
                }
            })
            .collect();
        self.conversations.push(Conversation {
            id: format!("t_{}_{n}", self.id),
            customer: customer.into(),
            messages,
        });
        self
    }
}

/// Everything the sandbox serves.
#[derive(Debug, Clone)]
pub struct World {
    pub pages: Vec<Page>,
    /// Conversations per page of `/{page}/conversations` results.
    pub conversations_per_page: usize,
    /// Messages per page of a conversation's `messages`.
    pub messages_per_page: usize,
    /// Meta serves the details of only this many most recent messages per conversation.
    pub readable_messages: usize,
}

impl Default for World {
    fn default() -> Self {
        World {
            pages: Vec::new(),
            conversations_per_page: 25,
            messages_per_page: 25,
            readable_messages: 20,
        }
    }
}

impl World {
    pub fn page_by_token(&mut self, token: &str) -> Option<&mut Page> {
        self.pages.iter_mut().find(|p| p.token == token)
    }

    /// How many messages Meta would serve in detail: what a complete poll stores.
    pub fn servable_messages(&self) -> usize {
        self.pages
            .iter()
            .flat_map(|p| &p.conversations)
            .map(|c| c.messages.len().min(self.readable_messages))
            .sum()
    }
}
