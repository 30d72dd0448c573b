//! Built-in keyword tables (CONTRACT §5), polite particles and natural-language
//! opt-out phrases for Indonesian, English and Russian.
//!
//! Every table is written in normalised form (see [`super::normalize`]):
//! upper case, no punctuation, no apostrophes (`DONT`), single spaces.
//! The phrase patterns are regular expressions over that form; the classifier
//! wraps each in spaces (` PATTERN `) and searches ` TEXT `, so a pattern
//! always starts and ends on a word boundary. `[^ ]*` means "the rest of the
//! word" (Russian endings, Indonesian suffixes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Language of a matched keyword or phrase, which is also the language of the
/// reply.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Id,
    En,
    Ru,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::Id, Language::En, Language::Ru];

    /// The keyword that replies in this language tell people to send to stop.
    pub fn stop_keyword(self) -> &'static str {
        match self {
            Language::Id | Language::En => "UNSUBSCRIBE",
            Language::Ru => "СТОП",
        }
    }

    /// The keyword that replies in this language tell people to send for help.
    pub fn help_keyword(self) -> &'static str {
        match self {
            Language::Id => "BANTUAN",
            Language::En => "HELP",
            Language::Ru => "ПОМОЩЬ",
        }
    }

    /// The keyword that replies in this language tell people to send to
    /// subscribe.
    pub fn start_keyword(self) -> &'static str {
        match self {
            Language::Id => "MAU",
            Language::En => "START",
            Language::Ru => "СТАРТ",
        }
    }

    /// The word that confirms a pending double opt-in in this language.
    pub fn confirm_keyword(self) -> &'static str {
        match self {
            Language::Id => "YA",
            Language::En => "YES",
            Language::Ru => "ДА",
        }
    }
}

crate::labels!(Language { Id => "id", En => "en", Ru => "ru" });

/// Error of parsing a [`Language`] from text other than `id`, `en`, `ru`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLanguageError(pub String);

impl fmt::Display for ParseLanguageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown language {:?} (expected id, en or ru)", self.0)
    }
}

impl std::error::Error for ParseLanguageError {}

impl FromStr for Language {
    type Err = ParseLanguageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "id" => Ok(Language::Id),
            "en" => Ok(Language::En),
            "ru" => Ok(Language::Ru),
            other => Err(ParseLanguageError(other.to_string())),
        }
    }
}

/// What a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    OptIn,
    Confirm,
    OptOut,
    OptOutAll,
    Help,
}

impl Kind {
    pub(crate) fn is_opt_out(self) -> bool {
        matches!(self, Kind::OptOut | Kind::OptOutAll)
    }
}

use Kind::*;
use Language::*;

/// Built-in keywords. A word listed for two languages (STOP, UNSUBSCRIBE,
/// INFO are Indonesian and English) is resolved by the classifier.
pub(crate) const KEYWORDS: &[(&str, Kind, Language)] = &[
    // opt-in
    ("MAU", OptIn, Id),
    ("DAFTAR", OptIn, Id),
    ("REG", OptIn, Id),
    ("START", OptIn, En),
    ("YES", OptIn, En),
    ("SUBSCRIBE", OptIn, En),
    ("JOIN", OptIn, En),
    ("UNSTOP", OptIn, En),
    ("ДА", OptIn, Ru),
    ("СТАРТ", OptIn, Ru),
    ("ПОДПИСКА", OptIn, Ru),
    ("ПОДПИСАТЬСЯ", OptIn, Ru),
    // confirmation of a pending double opt-in (YES and ДА are opt-in words,
    // which the state machine takes as a confirmation while pending)
    ("YA", Confirm, Id),
    // opt-out
    ("UNSUBSCRIBE", OptOut, Id),
    ("BERHENTI", OptOut, Id),
    ("UNREG", OptOut, Id),
    ("STOP", OptOut, Id),
    ("STOP", OptOut, En),
    ("UNSUBSCRIBE", OptOut, En),
    ("CANCEL", OptOut, En),
    ("END", OptOut, En),
    ("QUIT", OptOut, En),
    ("REVOKE", OptOut, En),
    ("OPTOUT", OptOut, En),
    ("OPT OUT", OptOut, En),
    ("STOPALL", OptOutAll, En),
    ("СТОП", OptOut, Ru),
    ("ОТПИСКА", OptOut, Ru),
    ("ОТПИСАТЬСЯ", OptOut, Ru),
    ("ХВАТИТ", OptOut, Ru),
    // help
    ("BANTUAN", Help, Id),
    ("INFO", Help, Id),
    ("HELP", Help, En),
    ("INFO", Help, En),
    ("ПОМОЩЬ", Help, Ru),
    ("ИНФО", Help, Ru),
    ("СПРАВКА", Help, Ru),
];

/// Words that, right after an opt-out keyword, widen it to every program.
pub(crate) const ALL_WORDS: &[&str] = &["ALL", "SEMUA", "ВСЕ", "ВСЁ"];

/// Polite words that may follow an opt-in, confirmation or help keyword
/// without making the message a sentence. Multi-word particles are listed as
/// one string.
pub(crate) const PARTICLES: &[&str] = &[
    // id
    "DONG",
    "YA",
    "YAH",
    "AJA",
    "SAJA",
    "DEH",
    "KAK",
    "KAKAK",
    "MIN",
    "GAN",
    "SIS",
    "TERIMA KASIH",
    "MAKASIH",
    "TRIMS", // en (also used in Indonesian texts)
    "PLEASE",
    "PLS",
    "PLZ",
    "THANKS",
    "THANK YOU",
    "THX", // ru
    "ПОЖАЛУЙСТА",
    "ПЖЛ",
    "СПАСИБО",
];

/// Extra words allowed after a help keyword only (`HELP me`, `info saya`).
pub(crate) const HELP_PARTICLES: &[&str] = &["ME", "SAYA", "AKU", "МНЕ"];

/// Words that reveal an Indonesian message. They decide the language of a
/// keyword that is both Indonesian and English (`STOP dong` is Indonesian,
/// `STOP` alone is English).
pub(crate) const INDONESIAN_MARKERS: &[&str] = &[
    "DONG", "YA", "YAH", "AJA", "SAJA", "DEH", "KAK", "KAKAK", "MIN", "GAN", "SIS", "TOLONG",
    "SAYA", "AKU", "LAGI", "JANGAN", "TIDAK", "GAK", "GA", "NGGAK", "MAKASIH", "TERIMA", "KASIH",
    "KIRIM", "NOMOR", "SUDAH", "UDAH", "SEMUA", "MOHON", "BERHENTI",
];

/// Natural-language opt-out phrases: (id reported as `keyword`, language,
/// pattern). Matched anywhere in the message unless a negation covers them.
pub(crate) const PHRASES: &[(&str, Language, &str)] = &[
    // en
    (
        "stop texting me",
        En,
        "(STOP|QUIT) (TEXTING|TEXT|TEXTS|SENDING|SEND|MESSAGING|MESSAGE|MESSAGES|MSG|MSGS|SMS|SPAMMING|SPAM|CONTACTING|BOTHERING|CALLING|EMAILING|RECEIVING|GETTING)",
    ),
    ("please stop", En, "(PLEASE|PLS|PLZ|KINDLY) (STOP|UNSUBSCRIBE|CANCEL|END)"),
    ("remove me", En, "REMOVE (ME|MY NUMBER|MY NO|THIS NUMBER|US)"),
    ("take me off", En, "TAKE (ME|MY NUMBER|US|THIS NUMBER) OFF"),
    (
        "do not text me",
        En,
        "(DO NOT|DONT|NEVER) (TEXT|TEXTS|SEND|MESSAGE|CONTACT|SMS|MSG|CALL|EMAIL|BOTHER|SPAM)",
    ),
    ("no more messages", En, "NO MORE (TEXTS?|MESSAGES?|MSGS?|SMS|SPAM|PROMOS?|ADS)"),
    ("leave me alone", En, "LEAVE ME ALONE"),
    ("opt me out", En, "OPT (ME|US) OUT"),
    (
        "want to cancel",
        En,
        "(WANT|WISH|LIKE|NEED) TO (CANCEL|UNSUBSCRIBE|QUIT|OPT OUT|UNREG|BE REMOVED|STOP (RECEIVING|GETTING|THESE|THE MESSAGES|THE TEXTS))",
    ),
    (
        "do not want these messages",
        En,
        "(DONT|DO NOT) WANT (THESE|THIS|THEM|YOUR|ANY|MORE|ANYMORE|TEXTS?|MESSAGES?|SMS)",
    ),
    ("unsubscribe", En, "(UNSUBSCRIBE|UNSUBSCRIBED|UNSUB|OPTOUT|OPT OUT|OPTED OUT)"),
    ("wrong number", En, "WRONG (NUMBER|NO|PERSON)"),
    ("not interested", En, "NOT INTERESTED"),
    // id
    (
        "jangan kirim",
        Id,
        "(JANGAN|JGN) (KIRIM|DIKIRIM|MENGIRIM|SMS|HUBUNGI|GANGGU|SPAM)[^ ]*",
    ),
    (
        "tidak mau lagi",
        Id,
        "(TIDAK|TDK|GAK|GA|GK|NGGAK|NGGA|ENGGAK|NDAK|ORA) (MAU|INGIN|PERLU|BUTUH|MINAT) (LAGI|LG|TERIMA|TRIMA|MENERIMA|DIKIRIM|DAPAT|SMS|PROMO|PESAN|DIHUBUNGI)",
    ),
    (
        "tidak berminat",
        Id,
        "(TIDAK|TDK|GAK|GA|GK|NGGAK|NGGA|ENGGAK) (BERMINAT|MINAT|TERTARIK)",
    ),
    (
        "berhenti kirim",
        Id,
        "(BERHENTI|STOP|STOPKAN|SETOP|HENTIKAN) (KIRIM|MENGIRIM|SMS|LANGGANAN|BERLANGGANAN|PESAN)[^ ]*",
    ),
    ("hentikan", Id, "HENTIKAN"),
    (
        "mau berhenti",
        Id,
        "(MAU|INGIN|PENGEN|PINGIN|MINTA|TOLONG|MOHON) (STOP|BERHENTI|UNREG|UNSUBSCRIBE|KELUAR|DIHAPUS)",
    ),
    (
        "hapus nomor saya",
        Id,
        "(HAPUS|HAPUSKAN|KELUARKAN|COPOT) (NOMOR|NOMER|NO|SAYA|AKU)",
    ),
    ("unreg", Id, "UNREG"),
    // ru
    (
        "не присылайте",
        Ru,
        "НЕ (ПРИСЫЛА|ПРИСЫЛ|ПРИШЛИТЕ|ОТПРАВЛЯ|ПИШИ|ПИШ|ШЛИ|ШЛЁ|ШЛЕ|БЕСПОКО|ЗВОНИ|СПАМ)[^ ]*",
    ),
    (
        "не надо присылать",
        Ru,
        "НЕ (НАДО|НУЖНО) (ПРИСЫЛА|ПИСА|ОТПРАВЛЯ|СЛА|СМС|СООБЩЕН|РАССЫЛ)[^ ]*",
    ),
    ("отпишите меня", Ru, "(ОТПИШ|ОТПИСА|ОТПИСК)[^ ]*"),
    (
        "уберите меня из рассылки",
        Ru,
        "(УБЕРИ|УДАЛИ|ИСКЛЮЧИ)[^ ]* (МЕНЯ|МОЙ НОМЕР|НОМЕР)",
    ),
    ("прекратите", Ru, "ПРЕКРАТИ[^ ]*"),
    ("больше не надо", Ru, "БОЛЬШЕ НЕ (НАДО|НУЖНО)"),
    (
        "не хочу получать",
        Ru,
        "НЕ ХОЧУ (ПОЛУЧАТЬ|БОЛЬШЕ|ЭТИ|ВАШИ|ВАШУ|РАССЫЛК|СООБЩЕН|СМС)[^ ]*",
    ),
];

/// Whole messages that refuse, without any keyword: when a text is unclear,
/// opt-out wins. Compared with the entire normalised message.
pub(crate) const REFUSALS: &[(&str, Language)] = &[
    ("TIDAK MAU", Id),
    ("TDK MAU", Id),
    ("GAK MAU", Id),
    ("GA MAU", Id),
    ("GK MAU", Id),
    ("NGGAK MAU", Id),
    ("ENGGAK MAU", Id),
    ("NO THANKS", En),
    ("NO THANK YOU", En),
    ("НЕ ХОЧУ", Ru),
    ("НЕ НАДО", Ru),
    ("НЕ НУЖНО", Ru),
];

/// Negations of opting out (`don't stop`, `jangan berhenti`, `не
/// останавливайте`). An opt-out phrase or keyword inside a negation does not
/// count.
pub(crate) const NEGATIONS: &[&str] = &[
    // en
    "(DONT|DO NOT|DOESNT|DOES NOT|DIDNT|DID NOT|NEVER|CANT|CANNOT|CAN NOT|WONT|WILL NOT|COULDNT|SHOULDNT|NOT|NO NEED TO) (EVER )?((WANT|WISH|NEED|LIKE) TO )?(STOP|STOPPING|UNSUBSCRIBE|CANCEL|END|QUIT|REMOVE|OPT OUT|OPTOUT)",
    // id
    "(JANGAN|JGN|TIDAK|TDK|GAK|GA|GK|NGGAK|NGGA|ENGGAK|BUKAN) (MAU |INGIN |PERLU )?(BERHENTI|STOP|UNREG|UNSUBSCRIBE|DIHENTIKAN|KELUAR|DIHAPUS|HAPUS)",
    // ru
    "НЕ (НАДО |НУЖНО )?(ОСТАНАВЛИВ|ОСТАНОВ|ПРЕКРАЩА|ПРЕКРАТ|ОТПИСЫВ|ОТПИСА|УДАЛЯ|УДАЛИ|ОТКЛЮЧА|УБИРА)[^ ]*",
];

/// Word classes of the intent grammar (see [`super::classify`]); a word may
/// have several.
pub(crate) mod class {
    /// An opt-out verb or noun that is a request on its own (`UNSUBSCRIBE`,
    /// `отказ-`, `отпис-`).
    pub const STOP_STRONG: u16 = 1;
    /// A stop, remove or refuse verb that needs an object or a short message
    /// (`STOP`, `CANCEL`, `HAPUS`, `отмен-`, `удал-`, `прекрат-`).
    pub const STOP: u16 = 1 << 1;
    /// A verb or noun of sending (`SEND`, `TEXT`, `KIRIM`, `присыл-`).
    pub const SEND: u16 = 1 << 2;
    /// A verb of receiving (`RECEIVE`, `TERIMA`, `получ-`): negated, it
    /// needs a want or a need (`didn't get` is no request).
    pub const RECV: u16 = 1 << 3;
    /// An imperative negation (`DONT`, `JANGAN`, `НЕ`).
    pub const NEG_IMP: u16 = 1 << 4;
    /// Any other negation (`NOT`, `TIDAK`): it needs a want or a need.
    pub const NEG: u16 = 1 << 5;
    /// Need and "any more" words between a negation and its verb (`USAH`,
    /// `PERLU`, `NEED`, `LAGI`, `БОЛЬШЕ`).
    pub const MODAL: u16 = 1 << 6;
    /// Wanting (`MAU`, `WANT`, `ХОЧУ`).
    pub const WANT: u16 = 1 << 7;
    /// An object of an opt-out: me, my number, the messages, the list, the
    /// subscription.
    pub const OBJ: u16 = 1 << 8;
    /// Interrogatives that make a stop verb a question about the programme.
    pub const QUESTION: u16 = 1 << 9;
    /// A request frame (`CAN`, `PLEASE`, `BISA`, `МОЖЕТЕ`).
    pub const REQUEST: u16 = 1 << 10;
    pub const HELP: u16 = 1 << 11;
    /// Words of a help request other than the help word (`NEED`, `MINTA`).
    pub const NEED: u16 = 1 << 12;
    /// The sender (`I`, `ME`, `SAYA`, `МНЕ`).
    pub const FIRST: u16 = 1 << 13;
    /// A third-person subject or an article before a stop word (`PROMONYA`,
    /// `THE`, `РАССЫЛКА`): the programme stops, nobody asks it to.
    pub const THIRD: u16 = 1 << 14;
    /// Polite and filler words (`DONG`, `AJA`, `SUDAH`, `PLEASE`).
    pub const FILLER: u16 = 1 << 15;
}

/// Determiners allowed between a negation and what it negates (`не нужны
/// ваши сообщения`, `don't want your texts`).
pub(crate) const DETERMINERS: &[&str] = &[
    "YOUR",
    "THESE",
    "THIS",
    "THOSE",
    "ANY",
    "ВАШИ",
    "ВАШИХ",
    "ВАШУ",
    "ВАШЕЙ",
    "ВАША",
    "ЭТИ",
    "ЭТУ",
    "ЭТИХ",
];

use class::*;

/// Normalised words and their grammar classes, with the language they show
/// (`None`: both Indonesian and English). Indonesian verbs are listed by
/// their base; affixed forms are found by stripping affixes.
pub(crate) const WORD_CLASSES: &[(&str, u16, Option<Language>)] = &[
    // en
    ("UNSUBSCRIBE", STOP_STRONG, None),
    ("UNSUB", STOP_STRONG, Some(En)),
    ("OPTOUT", STOP_STRONG, Some(En)),
    ("STOP", STOP, None),
    ("CANCEL", STOP, Some(En)),
    ("END", STOP, Some(En)),
    ("QUIT", STOP, Some(En)),
    ("REVOKE", STOP, Some(En)),
    ("REMOVE", STOP, Some(En)),
    ("DELETE", STOP, Some(En)),
    ("REFUSE", STOP, Some(En)),
    ("SEND", SEND, Some(En)),
    ("SENDING", SEND, Some(En)),
    ("TEXT", SEND, Some(En)),
    ("TEXTING", SEND, Some(En)),
    ("TEXTS", SEND | OBJ, Some(En)),
    ("MESSAGE", SEND, Some(En)),
    ("MESSAGES", SEND | OBJ, Some(En)),
    ("MESSAGING", SEND, Some(En)),
    ("MSG", SEND, Some(En)),
    ("MSGS", SEND | OBJ, Some(En)),
    ("SMS", SEND | OBJ, None),
    ("SPAM", SEND, None),
    ("SPAMMING", SEND, Some(En)),
    ("CONTACT", SEND, Some(En)),
    ("CONTACTING", SEND, Some(En)),
    ("CALL", SEND, Some(En)),
    ("CALLING", SEND, Some(En)),
    ("EMAIL", SEND, Some(En)),
    ("EMAILS", SEND | OBJ, Some(En)),
    ("RECEIVE", RECV, Some(En)),
    ("RECEIVING", RECV, Some(En)),
    ("GET", RECV, Some(En)),
    ("GETTING", RECV, Some(En)),
    ("DONT", NEG_IMP, Some(En)),
    ("NEVER", NEG_IMP, Some(En)),
    ("NOT", NEG, Some(En)),
    ("NO", NEG, Some(En)),
    ("CANT", NEG, Some(En)),
    ("CANNOT", NEG, Some(En)),
    ("WONT", NEG, Some(En)),
    ("DOESNT", NEG, Some(En)),
    ("DIDNT", NEG, Some(En)),
    ("NEED", MODAL | NEED, Some(En)),
    ("TO", MODAL, Some(En)),
    ("ANY", MODAL, Some(En)),
    ("MORE", MODAL, Some(En)),
    ("ANYMORE", MODAL, Some(En)),
    ("EVER", MODAL, Some(En)),
    ("LIKE", MODAL, Some(En)),
    ("WISH", MODAL, Some(En)),
    ("WANT", WANT, Some(En)),
    ("WANNA", WANT, Some(En)),
    ("ME", OBJ | FIRST, Some(En)),
    ("US", OBJ | FIRST, Some(En)),
    ("I", FIRST, Some(En)),
    ("MY", FIRST, Some(En)),
    ("NUMBER", OBJ, Some(En)),
    ("SUBSCRIPTION", OBJ, Some(En)),
    ("LIST", OBJ, Some(En)),
    ("PROGRAMME", OBJ, Some(En)),
    ("PROGRAM", OBJ, Some(En)),
    ("WHEN", QUESTION, Some(En)),
    ("WHY", QUESTION, Some(En)),
    ("CAN", REQUEST, Some(En)),
    ("COULD", REQUEST, Some(En)),
    ("WOULD", REQUEST, Some(En)),
    ("KINDLY", REQUEST, Some(En)),
    ("PLEASE", REQUEST | FILLER, Some(En)),
    ("PLS", REQUEST | FILLER, Some(En)),
    ("PLZ", REQUEST | FILLER, Some(En)),
    ("THANKS", FILLER, Some(En)),
    ("HELP", HELP, Some(En)),
    ("NEEDED", NEED, Some(En)),
    ("THE", THIRD, Some(En)),
    ("A", THIRD, Some(En)),
    ("AN", THIRD, Some(En)),
    ("WILL", THIRD, Some(En)),
    ("DID", THIRD, Some(En)),
    ("DOES", THIRD, Some(En)),
    ("BUS", THIRD, Some(En)),
    ("SALE", THIRD, Some(En)),
    ("DEALS", THIRD, Some(En)),
    ("OFFERS", THIRD, Some(En)),
    // id (bases: affixed forms are stripped to these)
    ("UNREG", STOP_STRONG, Some(Id)),
    ("BERHENTI", STOP, Some(Id)),
    // colloquial base, so that affixed forms (`berentiin`) are found
    ("BERENTI", STOP, Some(Id)),
    ("HENTI", STOP, Some(Id)),
    ("SETOP", STOP, Some(Id)),
    ("HAPUS", STOP, Some(Id)),
    ("KELUAR", STOP, Some(Id)),
    ("BATAL", STOP, Some(Id)),
    ("KIRIM", SEND, Some(Id)),
    ("PESAN", SEND | OBJ, Some(Id)),
    ("HUBUNG", SEND, Some(Id)),
    ("GANGGU", SEND, Some(Id)),
    ("TERIMA", RECV, Some(Id)),
    ("DAPAT", RECV, Some(Id)),
    ("JANGAN", NEG_IMP, Some(Id)),
    ("JGN", NEG_IMP, Some(Id)),
    ("TIDAK", NEG, Some(Id)),
    ("TDK", NEG, Some(Id)),
    ("GAK", NEG, Some(Id)),
    ("GA", NEG, Some(Id)),
    ("GK", NEG, Some(Id)),
    ("NGGAK", NEG, Some(Id)),
    ("NGGA", NEG, Some(Id)),
    ("ENGGAK", NEG, Some(Id)),
    ("NDAK", NEG, Some(Id)),
    ("USAH", MODAL, Some(Id)),
    ("PERLU", MODAL | NEED, Some(Id)),
    ("BUTUH", MODAL | NEED, Some(Id)),
    ("MINAT", MODAL, Some(Id)),
    ("LAGI", MODAL | FILLER, Some(Id)),
    ("SUDAH", MODAL | FILLER, Some(Id)),
    ("MAU", WANT, Some(Id)),
    ("INGIN", WANT, Some(Id)),
    ("PENGEN", WANT, Some(Id)),
    ("SAYA", OBJ | FIRST, Some(Id)),
    ("AKU", OBJ | FIRST, Some(Id)),
    ("KU", FIRST, Some(Id)),
    ("NOMOR", OBJ, Some(Id)),
    ("NOMER", OBJ, Some(Id)),
    ("LANGGANAN", OBJ, Some(Id)),
    ("BERLANGGANAN", OBJ, Some(Id)),
    ("KAPAN", QUESTION, Some(Id)),
    ("KENAPA", QUESTION, Some(Id)),
    ("MENGAPA", QUESTION, Some(Id)),
    ("KOK", QUESTION, Some(Id)),
    ("BISA", REQUEST, Some(Id)),
    ("BISAKAH", REQUEST, Some(Id)),
    ("TOLONG", REQUEST | FILLER, Some(Id)),
    ("MOHON", REQUEST | FILLER, Some(Id)),
    ("MINTA", NEED, Some(Id)),
    ("BANTU", HELP, Some(Id)),
    ("BANTUAN", HELP, Some(Id)),
    ("DONG", FILLER, Some(Id)),
    ("AJA", FILLER, Some(Id)),
    ("SAJA", FILLER, Some(Id)),
    ("YA", FILLER, Some(Id)),
    ("DEH", FILLER, Some(Id)),
    ("KAK", FILLER, Some(Id)),
    ("MIN", FILLER, Some(Id)),
    ("GAN", FILLER, Some(Id)),
    // ru: function words, matched before stemming
    ("НЕ", NEG_IMP, Some(Ru)),
    ("НАДО", MODAL, Some(Ru)),
    ("НУЖНО", MODAL | NEED, Some(Ru)),
    ("НУЖНА", NEED, Some(Ru)),
    ("НУЖЕН", NEED, Some(Ru)),
    ("НУЖНЫ", MODAL, Some(Ru)),
    ("БОЛЬШЕ", MODAL, Some(Ru)),
    ("ХОЧУ", WANT, Some(Ru)),
    ("ХОТИМ", WANT, Some(Ru)),
    ("МЕНЯ", OBJ | FIRST, Some(Ru)),
    ("МНЕ", OBJ | FIRST, Some(Ru)),
    ("НАС", OBJ | FIRST, Some(Ru)),
    ("НАМ", OBJ | FIRST, Some(Ru)),
    ("Я", FIRST, Some(Ru)),
    ("МОЙ", FIRST, Some(Ru)),
    ("МОЮ", FIRST, Some(Ru)),
    ("МОИ", FIRST, Some(Ru)),
    ("КОГДА", QUESTION, Some(Ru)),
    ("ПОЧЕМУ", QUESTION, Some(Ru)),
    ("МОЖЕТЕ", REQUEST, Some(Ru)),
    ("МОЖНО", REQUEST, Some(Ru)),
    ("ПОЖАЛУЙСТА", REQUEST | FILLER, Some(Ru)),
    ("СПАСИБО", FILLER, Some(Ru)),
    ("РАССЫЛКА", THIRD, Some(Ru)),
    ("АКЦИЯ", THIRD, Some(Ru)),
];

/// Whole Russian stems for words whose stem the algorithm cuts shorter than
/// the root (`отмена` → `отм`), matched whole (`отметьте`, "mark", has
/// the stem `отмет`).
pub(crate) const RU_EXACT_STEMS: &[(&str, u16)] = &[("отм", STOP)];

/// Roots of Russian Snowball stems (lower case) and their grammar classes:
/// a word whose stem starts with the root has the class, so one root covers
/// every form (`отказ`: отказ, отказываюсь, отказываемся, отказа…).
pub(crate) const RU_STEMS: &[(&str, u16)] = &[
    ("отказ", STOP_STRONG),
    ("отпис", STOP_STRONG),
    ("отмен", STOP),
    ("прекрат", STOP),
    ("прекращ", STOP),
    ("удал", STOP),
    ("перест", STOP),
    ("хват", STOP),
    ("исключ", STOP),
    ("убер", STOP),
    ("убра", STOP),
    ("стоп", STOP),
    ("отключ", STOP),
    ("присыл", SEND),
    ("присла", SEND),
    ("отправ", SEND),
    ("пиш", SEND),
    ("писа", SEND),
    ("шл", SEND),
    ("звон", SEND),
    ("беспоко", SEND),
    ("рассыла", SEND),
    ("спам", SEND),
    ("получ", RECV),
    ("рассылк", OBJ),
    ("подписк", OBJ),
    ("сообщен", OBJ | SEND),
    ("смс", OBJ | SEND),
    ("номер", OBJ),
    ("спис", OBJ),
    ("баз", OBJ),
    ("помог", HELP),
    ("помощ", HELP),
    ("справк", HELP),
];

/// Whether a single normalised word is a built-in keyword (used to break ties
/// when folding look-alike letters).
pub(crate) fn is_builtin_token(word: &str) -> bool {
    KEYWORDS.iter().any(|(k, _, _)| *k == word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::normalize::normalize;

    #[test]
    fn every_table_entry_is_already_normalised() {
        let tables = KEYWORDS
            .iter()
            .map(|(k, _, _)| *k)
            .chain(ALL_WORDS.iter().copied())
            .chain(PARTICLES.iter().copied())
            .chain(HELP_PARTICLES.iter().copied())
            .chain(INDONESIAN_MARKERS.iter().copied())
            .chain(REFUSALS.iter().map(|(r, _)| *r));
        for word in tables {
            assert_eq!(
                normalize(word),
                word,
                "table entry {word:?} is not normalised"
            );
        }
    }

    #[test]
    fn languages_round_trip_through_their_names() {
        for lang in Language::ALL {
            assert_eq!(lang.as_str().parse::<Language>(), Ok(lang));
        }
        assert!("fr".parse::<Language>().is_err());
    }
}
