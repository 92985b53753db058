//! The words reply extraction looks for, as data: each table is one kind of line, in every language
//! it knows. The regular expressions in `reply.rs` are built from these lists once; adding a
//! language is adding words here (and a test case in `tests.rs`).

/// "On <date>, <name> wrote:" — the word a quote header starts with (case-insensitive, then a space).
pub const ON: &[&str] = &[
    "on",     // English
    "am",     // German
    "le",     // French
    "el",     // Spanish
    "il",     // Italian
    "em",     // Portuguese
    "no dia", // Portuguese
    "op",     // Dutch
    "den",    // Swedish, Danish
    "på",     // Norwegian
    "w dniu", // Polish
    "dnia",   // Polish
    "в",      // Russian
    "vào",    // Vietnamese
    "在",     // Chinese
    "于",     // Chinese
];

/// The words a quote header ends with, before the colon.
pub const WROTE: &[&str] = &[
    "wrote",
    "writes",
    "sent",
    "schrieb",
    "geschrieben",
    "a écrit",
    "a ecrit",
    "escribió",
    "escribio",
    "ha scritto",
    "scrisse",
    "escreveu",
    "schreef",
    "het volgende geschreven",
    "skrev",
    "skriver",
    "napisał",
    "napisał\\(a\\)",
    "napisała",
    "pisze",
    "написал",
    "написал\\(а\\)",
    "написала",
    "пишет",
    "đã viết",
    "写道",
    "寫道",
    "のメッセージ",
    "は書きました",
    "kirjoitti",
    "írta",
];

/// "-----Original Message-----" and its translations (between runs of dashes).
pub const ORIGINAL_MESSAGE: &[&str] = &[
    "original message",
    "reply message",
    "ursprüngliche nachricht",
    "antwort nachricht",
    "originalnachricht",
    "oprindelig meddelelse",
    "message d'origine",
    "message original",
    "mensaje original",
    "messaggio originale",
    "mensagem original",
    "oorspronkelijk bericht",
    "origineel bericht",
    "ursprungligt meddelande",
    "opprinnelig melding",
    "wiadomość oryginalna",
    "oryginalna wiadomość",
    "исходное сообщение",
    "元のメッセージ",
    "原始邮件",
    "原始郵件",
];

/// An inline forward's first line, between runs of dashes ("---------- Forwarded message ---------").
pub const FORWARDED_DASHED: &[&str] = &[
    "forwarded message",
    "original message follows",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
    "messaggio inoltrato",
    "mensagem encaminhada",
    "mensagem reencaminhada",
    "doorgestuurd bericht",
    "vidarebefordrat meddelande",
    "videresendt melding",
    "videresendt meddelelse",
    "przekazana wiadomość",
    "wiadomość przekazana dalej",
    "пересылаемое сообщение",
    "пересланное сообщение",
    "転送されたメッセージ",
    "转发的邮件",
    "轉寄的郵件",
];

/// Apple Mail's "Begin forwarded message:" and its translations (a whole line, colon optional).
pub const FORWARDED_BEGIN: &[&str] = &[
    "begin forwarded message",
    "anfang der weitergeleiteten nachricht",
    "début du message réexpédié",
    "début du message transféré",
    "inicio del mensaje reenviado",
    "inizio messaggio inoltrato",
    "início da mensagem reencaminhada",
    "início da mensagem encaminhada",
    "begin doorgestuurd bericht",
    "vidarebefordrat brev",
    "videresendt melding",
    "videresendt besked",
    "początek przekazywanej wiadomości",
    "начало переадресованного сообщения",
    "転送されたメッセージ",
    "转发的邮件",
];

/// The field names of a quoted or forwarded header block (Outlook's "From: … Sent: …"), by field.
pub const FROM: &[&str] = &[
    "from",
    "von",
    "de",
    "da",
    "van",
    "från",
    "fra",
    "od",
    "от",
    "差出人",
    "发件人",
    "寄件者",
    "expéditeur",
    "afzender",
    "remitente",
    "mittente",
    "lähettäjä",
];
pub const SENT: &[&str] = &[
    "sent",
    "date",
    "datum",
    "gesendet",
    "envoyé",
    "date d'envoi",
    "enviado",
    "enviada",
    "fecha",
    "inviato",
    "data",
    "verzonden",
    "skickat",
    "sendt",
    "wysłano",
    "wysłane",
    "отправлено",
    "дата",
    "送信日時",
    "日付",
    "发送时间",
    "日期",
    "時間",
    "lähetetty",
];
pub const TO: &[&str] =
    &["to", "an", "à", "a", "para", "aan", "till", "til", "do", "кому", "宛先", "收件人", "收件者", "vastaanottaja"];
pub const SUBJECT: &[&str] = &[
    "subject",
    "betreff",
    "objet",
    "asunto",
    "oggetto",
    "assunto",
    "onderwerp",
    "ämne",
    "emne",
    "temat",
    "тема",
    "件名",
    "主题",
    "主旨",
    "aihe",
];
pub const CC: &[&str] = &["cc", "kopie", "копия", "抄送"];

/// Subject prefixes of a forward (Outlook puts its header block under them without a marker line).
pub const FORWARD_SUBJECT: &[&str] =
    &["fwd", "fw", "wg", "tr", "rv", "enc", "i", "doorst", "vs", "vb", "pd", "пересл", "转发", "転送", "fwd :"];

/// A mobile client's line, the whole signature when it ends the message: "Sent from my iPhone".
pub const SENT_FROM: &[&str] = &[
    r"sent from my [^,;!?.]+",
    r"sent from (?:outlook|yahoo mail|mail|mail for windows(?: 10| 11)?|samsung mobile)(?: for [^,;!?.]+)?",
    r"sent from [^,;!?.]+ (?:on|for) (?:iphone|ipad|android|ios)",
    r"get outlook for (?:ios|android)",
    r"sent via [^,;!?.]+",
    r"von meinem [^,;!?.]+ gesendet",
    r"gesendet von meinem [^,;!?.]+",
    r"gesendet mit [^,;!?.]+",
    r"envoyé de mon [^,;!?.]+",
    r"envoyé depuis mon [^,;!?.]+",
    r"enviado desde mi [^,;!?.]+",
    r"inviato da(?: mio| il mio)? [^,;!?.]+",
    r"enviado do meu [^,;!?.]+",
    r"enviado de meu [^,;!?.]+",
    r"verzonden (?:vanaf|met) (?:mijn )?[^,;!?.]+",
    r"skickat från min [^,;!?.]+",
    r"sendt fra min [^,;!?.]+",
    r"wysłane z (?:mojego )?[^,;!?.]+",
    r"отправлено с (?:моего )?[^,;!?.]+",
    r"[^,;!?.]+から送信",
    r"发自我的[^,;!?.]+",
    r"從我的 ?[^,;!?.]+傳送",
];

/// Closing words: when one ends the new text, the short lines after it are the signature.
pub const VALEDICTIONS: &[&str] = &[
    "thanks",
    "thank you",
    "many thanks",
    "thanks again",
    "thx",
    "cheers",
    "best",
    "best regards",
    "kind regards",
    "warm regards",
    "regards",
    "best wishes",
    "all the best",
    "sincerely",
    "yours",
    "yours sincerely",
    "yours truly",
    "take care",
    "mit freundlichen grüßen",
    "mit freundlichen grüssen",
    "viele grüße",
    "viele grüsse",
    "beste grüße",
    "liebe grüße",
    "grüße",
    "gruß",
    "vg",
    "lg",
    "mfg",
    "cordialement",
    "bien cordialement",
    "bien à vous",
    "merci",
    "saludos",
    "un saludo",
    "atentamente",
    "gracias",
    "cordiali saluti",
    "saluti",
    "grazie",
    "atenciosamente",
    "abraços",
    "obrigado",
    "obrigada",
    "met vriendelijke groet",
    "groeten",
    "med vänliga hälsningar",
    "vänliga hälsningar",
    "hälsningar",
    "mvh",
    "med venlig hilsen",
    "venlig hilsen",
    "med vennlig hilsen",
    "hilsen",
    "pozdrawiam",
    "z poważaniem",
    "с уважением",
    "спасибо",
    "よろしくお願いします",
    "よろしくお願いいたします",
    "谢谢",
    "此致",
];
