// queue/webhook: the Haraka peer's mail-to-webhook step, written the way a Haraka user writes one.
// The message is parsed with mailparser's simpleParser (what Haraka users reach for), a JSON event
// is POSTed to [main] url in config/webhook.ini over a keep-alive connection, and the sender gets
// 250 (OK) only after the endpoint answered 2xx; anything else is 451 (DENYSOFT) so the sender
// retries. Nothing is written to disk: like bench/peer_aiosmtpd.py, a crash after the 250 loses
// nothing only because the POST already happened.
const http = require('node:http')
const https = require('node:https')
const { URL } = require('node:url')
const { simpleParser } = require('mailparser')

// Same as mxhook's [webhook] inline_raw_max and the aiosmtpd peer: the raw message inline up to 256 KiB.
const INLINE_RAW_MAX = 256 * 1024

exports.register = function () {
    this.load_webhook_ini()
    this.register_hook('queue', 'post_event')
}

exports.load_webhook_ini = function () {
    this.cfg = this.config.get('webhook.ini', () => this.load_webhook_ini())
    this.url = new URL(this.cfg.main.url)
    this.client = this.url.protocol === 'https:' ? https : http
    // One pool per worker; keep-alive so each POST does not pay a TCP handshake.
    this.agent = new this.client.Agent({ keepAlive: true, maxSockets: 64 })
    this.timeout_ms = (Number(this.cfg.main.timeout) || 10) * 1000
}

exports.post_event = function (next, connection) {
    const txn = connection.transaction
    txn.message_stream.get_data(async (raw) => {
        try {
            const event = await this.build_event(connection, txn, raw)
            const status = await this.post(JSON.stringify(event))
            if (status >= 200 && status < 300) return next(OK, 'Ok: delivered')
            connection.logerror(this, `webhook answered ${status}`)
        } catch (err) {
            connection.logerror(this, `webhook failed: ${err.message}`)
        }
        next(DENYSOFT, 'Error: webhook failed, try again later')
    })
}

exports.build_event = async function (connection, txn, raw) {
    const mail = await simpleParser(raw, { skipImageLinks: true })
    const addrs = (a) => (a ? (Array.isArray(a) ? a : [a]).flatMap((x) => x.value) : [])
    return {
        type: 'email.received',
        created_at: Date.now() / 1000,
        smtp: {
            mail_from: txn.mail_from.address,
            rcpt_to: txn.rcpt_to.map((r) => r.address),
            client_ip: connection.remote.ip,
            helo: connection.hello.host,
        },
        message_id: mail.messageId || null,
        subject: mail.subject || null,
        from: addrs(mail.from),
        to: addrs(mail.to),
        cc: addrs(mail.cc),
        date: mail.date || null,
        headers: mail.headerLines.map((h) => [h.key, h.line.slice(h.key.length + 1).trim()]),
        text: mail.text || null,
        html: mail.html || null,
        attachments: mail.attachments.map((a) => ({
            filename: a.filename || null,
            content_type: a.contentType,
            size: a.size,
            checksum: a.checksum,
            content_id: a.contentId || null,
            disposition: a.contentDisposition || null,
        })),
        raw: { size: raw.length, base64: raw.length <= INLINE_RAW_MAX ? raw.toString('base64') : null },
    }
}

exports.post = function (body) {
    return new Promise((resolve, reject) => {
        const req = this.client.request(
            this.url,
            {
                method: 'POST',
                agent: this.agent,
                timeout: this.timeout_ms,
                headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
            },
            (res) => {
                res.resume()
                res.on('end', () => resolve(res.statusCode))
                res.on('error', reject)
            },
        )
        req.on('timeout', () => req.destroy(new Error('timeout')))
        req.on('error', reject)
        req.end(body)
    })
}
