// node asyncapi.mjs ROOT IMAGE.json [--write]: check proto/asyncapi.yaml.
//
//   1. A valid AsyncAPI 3.0 document (@asyncapi/parser): no error, no warning.
//   2. Every channel has one operation, producers and consumers, and one message whose
//      x-protobuf names a file and a message of the contract (IMAGE.json: `buf build
//      -o IMAGE.json`), a Kafka key, and on outgoing topics the CloudEvents headers.
//   3. Every .proto file's "// Topic: NAME" header names the address of the channel
//      that carries its message.
//   4. docs/contract.md's topic table (between the topics markers) is the one this
//      document makes; --write puts it there instead of checking.
// Prints one line per problem; exits 1 on any.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Parser, fromFile } from '@asyncapi/parser';

const [root, imagePath, flag] = process.argv.slice(2);
const problems = [];
const problem = (msg) => problems.push(msg);

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, join(root, 'proto/asyncapi.yaml')).parse();
for (const d of diagnostics) {
        // Spectral severities: 0 error, 1 warning, 2 information, 3 hint. The one
        // information it gives is that 3.1.0 exists; the contract is written to 3.0.0.
        if (d.severity <= 1)
                problem(`asyncapi: ${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
}
if (!document) {
        problems.forEach((p) => console.log(p));
        console.log('asyncapi: the document did not parse');
        process.exit(1);
}
const doc = document.json();
if (doc.asyncapi !== '3.0.0')
        problem(`asyncapi: version ${doc.asyncapi}, expected 3.0.0`);

// The contract's messages, from the buf image: "allvarssamtal.v1.Name" -> file.
const image = JSON.parse(readFileSync(imagePath, 'utf8'));
const protoMessages = new Map();
for (const f of image.file ?? [])
        for (const m of f.messageType ?? [])
                protoMessages.set(`${f.package}.${m.name}`, f.name);

const ceHeaders = ['content-type', 'ce_specversion', 'ce_id', 'ce_type', 'ce_source', 'ce_time'];
const rows = [];
const topicOfFile = new Map();
for (const [channelId, ch] of Object.entries(doc.channels)) {
        const ops = Object.values(doc.operations).filter((o) => o.channel === ch);
        if (ops.length !== 1) {
                problem(`channel ${channelId}: ${ops.length} operations, expected 1`);
                continue;
        }
        const direction = ops[0].action === 'receive' ? 'in' : 'out';
        if (!ch['x-producers']?.length || !ch['x-consumers']?.length)
                problem(`channel ${channelId}: x-producers and x-consumers are required`);
        if (!ch.summary)
                problem(`channel ${channelId}: summary (who it is for) is required`);
        const messages = Object.values(ch.messages ?? {});
        if (messages.length === 0)
                problem(`channel ${channelId}: no message`);
        const names = [];
        let key;
        for (const m of messages) {
                const pb = m['x-protobuf'];
                if (!pb?.file || !pb?.message) {
                        problem(`message ${m.name}: x-protobuf {file, message} is required`);
                        continue;
                }
                const file = protoMessages.get(pb.message);
                if (file === undefined)
                        problem(`message ${m.name}: ${pb.message} is not a message of proto/`);
                else if (file !== pb.file)
                        problem(`message ${m.name}: ${pb.message} is in ${file}, not ${pb.file}`);
                if (pb.message.split('.').pop() !== m.name)
                        problem(`message ${m.name}: its name differs from ${pb.message}`);
                if (m.contentType !== 'application/protobuf')
                        problem(`message ${m.name}: contentType must be application/protobuf`);
                const k = m.bindings?.kafka?.key;
                if (!k?.title)
                        problem(`message ${m.name}: bindings.kafka.key with a title is required`);
                else if (key !== undefined && key !== k.title)
                        problem(`channel ${channelId}: its messages have different keys`);
                key = k?.title;
                if (direction === 'out') {
                        const h = m.headers?.properties ?? {};
                        for (const name of ceHeaders)
                                if (!(name in h))
                                        problem(`message ${m.name}: header ${name} missing (CloudEvents binary mode)`);
                }
                names.push(`\`${m.name}\``);
                topicOfFile.set(pb.file, ch.address);
        }
        const files = [...new Set(messages.map((m) => m['x-protobuf']?.file?.split('/').pop()))];
        rows.push(`| \`${ch.address}\` | ${direction} | ${names.join(', ')} (${files.map((f) => `\`${f}\``).join(', ')}) ` +
                `| ${key} | ${ch.summary} |`);
}

for (const [file, address] of topicOfFile) {
        const text = readFileSync(join(root, 'proto', file), 'utf8');
        const m = /^\/\/ Topic: (\S+)/m.exec(text);
        if (!m)
                problem(`proto/${file}: no "// Topic:" header`);
        else if (m[1] !== address)
                problem(`proto/${file}: its header names ${m[1]}, the document ${address}`);
}

const begin = '<!-- topics: generated from proto/asyncapi.yaml by tests/contract/asyncapi.sh --write -->';
const end = '<!-- end of topics -->';
const table = ['| topic (default name) | direction | message | key | for |', '|---|---|---|---|---|', ...rows].join('\n');
const readmePath = join(root, 'docs/contract.md');
const readme = readFileSync(readmePath, 'utf8');
const b = readme.indexOf(begin), e = readme.indexOf(end);
if (b < 0 || e < b) {
        problem(`docs/contract.md: the markers of the topic table are missing`);
} else {
        const current = readme.slice(b + begin.length, e).trim();
        if (flag === '--write') {
                writeFileSync(readmePath, `${readme.slice(0, b + begin.length)}\n\n${table}\n\n${readme.slice(e)}`);
                console.log('docs/contract.md: topic table written');
        } else if (current !== table) {
                problem(`docs/contract.md: the topic table differs from proto/asyncapi.yaml (tests/contract/asyncapi.sh --write); expected:\n${table}`);
        }
}

problems.forEach((p) => console.log(p));
if (problems.length) process.exit(1);
console.log(`proto/asyncapi.yaml: valid AsyncAPI ${doc.asyncapi}, ${rows.length} topics, the table of docs/contract.md agrees`);
