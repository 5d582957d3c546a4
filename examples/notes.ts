/** Note sync: a replicated notebook, and the demo Workbench HTTP server on top of it. */
import { NoteSync } from '../actors/note-sync.ts';
import { startWorkbench } from '../src/workbench/server.ts';
import { connectLocal } from './connect.ts';

const syncClient = await connectLocal();
const sync = await NoteSync.open({ client: syncClient });
const { note } = await sync.createNote({ path: `/examples/hello-${Date.now()}` });
const noteId = note!.id;
await sync.insertParagraph(noteId, { text: '%python print(1 + 1)' });
console.log('note', noteId, 'has', sync.note(noteId)?.paragraphs.length, 'paragraph(s); notebook hash', sync.canonicalHash().slice(0, 16));

const wbClient = await connectLocal();
const wb = await startWorkbench({ client: wbClient, port: 0 });
const res = await fetch(`${wb.url}/api/notebook`);
console.log(`workbench at ${wb.url}: GET /api/notebook → ${res.status}, ${(await res.text()).length} bytes of notes`);
console.log(`try: curl ${wb.url}/api/notebook`);
await wb.close();
await sync.close();
await Promise.all([syncClient.close(), wbClient.close()]);
