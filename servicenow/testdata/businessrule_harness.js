// Runs ServiceNow Business Rules under Node.js with stubs of the documented
// server-side APIs they use (gs, GlideRecord, GlideDateTime, GlideStringUtil,
// GlideCertificateEncryption, sn_ws.RESTMessageV2, Class.create) and prints
// the HTTP requests the rules send, as JSON. Used by TestBusinessRules.
//
// stdin: {"dir": "<businessrule dir>", "includes": ["HandoffWebhook.js"],
//         "props": {...}, "now_ms": 1714658591123, "mac_charset": "utf8"|"latin1",
//         "tables": {"chat_queue_entry": [{"group": "…", "opened_by.user_name": "…"}]},
//         "runs": [{"rule": "live_message_webhook.js", "current": {...}, "display": {...},
//                   "previous": {...}|null}]}
// stdout: [{"rule", "endpoint", "method", "headers": {...}, "body_base64", "auth_profile"}]
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const crypto = require('crypto');

const scenario = JSON.parse(fs.readFileSync(0, 'utf8'));
const sent = [];
const logs = [];

function record(fields, display) {
    const get = (f) => (fields[f] === undefined || fields[f] === null ? null : String(fields[f]));
    const rec = {
        getValue: get,
        getUniqueValue: () => get('sys_id'),
    };
    for (const f of Object.keys(display || {})) {
        rec[f] = { getDisplayValue: () => String(display[f]) };
    }
    for (const f of Object.keys(fields)) {
        if (!rec[f]) {
            rec[f] = { getDisplayValue: () => get(f) || '' };
        }
    }
    return rec;
}

class GlideRecord {
    constructor(table) { this.table = table; this.conds = []; this.order = null; this.limit = Infinity; this.rows = []; this.i = 0; }
    // addQuery(field, value) or addQuery(field, operator, value) with the
    // operators the rules use (=, !=, <=); values compare as strings, as
    // ServiceNow's "YYYY-MM-DD HH:MM:SS" date-times do.
    addQuery(field, op, value) {
        if (value === undefined) { value = op; op = '='; }
        if (!['=', '!=', '<='].includes(op)) throw new Error('unsupported operator ' + op);
        this.conds.push([field, op, String(value)]);
    }
    orderByDesc(field) { this.order = field; }
    setLimit(n) { this.limit = n; }
    query() {
        const rows = (scenario.tables || {})[this.table] || [];
        const match = (r, [f, op, v]) => {
            const x = r[f] === undefined || r[f] === null ? '' : String(r[f]);
            return op === '=' ? x === v : op === '!=' ? x !== v : x <= v;
        };
        this.rows = rows.filter((r) => this.conds.every((c) => match(r, c)));
        if (this.order) {
            const f = this.order;
            this.rows.sort((a, b) => (String(a[f]) < String(b[f]) ? 1 : String(a[f]) > String(b[f]) ? -1 : 0));
        }
        this.rows = this.rows.slice(0, this.limit);
    }
    hasNext() { return this.i < this.rows.length; }
    next() { return this.i < this.rows.length ? (this.current = this.rows[this.i++], true) : false; }
    getValue(f) { const v = this.current && this.current[f]; return v === undefined || v === null ? null : String(v); }
    getUniqueValue() { return this.getValue('sys_id'); }
}

class RESTMessageV2 {
    constructor() { this.req = { headers: {}, method: '', endpoint: '', body: '', auth_profile: '' }; }
    setEndpoint(u) { this.req.endpoint = u; }
    setHttpMethod(m) { this.req.method = String(m).toUpperCase(); }
    setRequestHeader(k, v) { this.req.headers[k] = String(v); }
    setRequestBody(b) { this.req.body = String(b); }
    setHttpTimeout(ms) { this.req.timeout = ms; }
    setAuthenticationProfile(type, id) { this.req.auth_profile = type + ':' + id; }
    executeAsync() {
        // The character set RESTMessageV2 sends in is undocumented: the
        // harness uses the one the rule names, else ISO-8859-1.
        const ct = this.req.headers['Content-Type'] || '';
        const charset = /charset=utf-8/i.test(ct) ? 'utf8' : 'latin1';
        sent.push({ rule: this.rule, endpoint: this.req.endpoint, method: this.req.method, headers: this.req.headers,
            auth_profile: this.req.auth_profile, body_base64: Buffer.from(this.req.body, charset).toString('base64') });
        return {};
    }
    execute() { throw new Error('the rules must not block on execute()'); }
}

const sandbox = {
    JSON, Math, String, Array, Object, Error,
    Class: { create: () => function () { this.initialize.apply(this, arguments); } },
    gs: {
        getProperty: (name, def) => (scenario.props && name in scenario.props ? String(scenario.props[name]) : def),
        warn: (m) => logs.push('warn: ' + m),
        error: (m) => logs.push('error: ' + m),
        info: (m) => logs.push('info: ' + m),
        base64Encode: (s) => Buffer.from(String(s), 'utf8').toString('base64'),
    },
    GlideRecord,
    GlideDateTime: function () { this.getNumericValue = () => scenario.now_ms; },
    GlideStringUtil: { base64Encode: (s) => Buffer.from(String(s), 'utf8').toString('base64') },
    GlideCertificateEncryption: function () {
        // generateMac(base64Key, "HmacSHA256", data) → base64. The character
        // set it hashes data in is undocumented: the scenario chooses.
        this.generateMac = (key, alg, data) => {
            if (alg !== 'HmacSHA256') throw new Error('unexpected algorithm ' + alg);
            return crypto.createHmac('sha256', Buffer.from(key, 'base64'))
                .update(Buffer.from(String(data), scenario.mac_charset || 'utf8')).digest('base64');
        };
    },
    sn_ws: { RESTMessageV2: function () { const r = new RESTMessageV2(); r.rule = sandbox.__rule; return r; } },
};
vm.createContext(sandbox);
for (const inc of scenario.includes || []) {
    vm.runInContext(fs.readFileSync(path.join(scenario.dir, inc), 'utf8'), sandbox, { filename: inc });
}
for (const run of scenario.runs) {
    sandbox.__rule = run.rule;
    sandbox.current = record(run.current, run.display);
    sandbox.previous = run.previous ? record(run.previous, {}) : null;
    vm.runInContext(fs.readFileSync(path.join(scenario.dir, run.rule), 'utf8'), sandbox, { filename: run.rule });
}
process.stdout.write(JSON.stringify({ sent, logs }));
