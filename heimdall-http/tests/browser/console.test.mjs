// The admin console in a real browser: Playwright (playwright-core) drives Debian's headless Chromium against
// `heimdall demo` (the console, the development identity provider), axe-core checks every page, and every page
// is saved as a screenshot. Run by scripts/test:
//   HEIMDALL_BIN=target/debug/heimdall node console.test.mjs
// Environment: HEIMDALL_BIN (required), HEIMDALL_CHROMIUM (default /usr/bin/chromium), HEIMDALL_SCREENSHOTS
// (default ./screenshots). Ends with the lines `console: N passed, M failed` and
// `axe: pages=N serious=N critical=N`; exits non-zero when a test failed or axe found a serious or critical
// violation.

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const BIN = process.env.HEIMDALL_BIN;
const SHOTS = process.env.HEIMDALL_SCREENSHOTS ?? new URL('./screenshots', import.meta.url).pathname;
const CHROMIUM = process.env.HEIMDALL_CHROMIUM ?? '/usr/bin/chromium';
if (!BIN) {
  console.error('HEIMDALL_BIN must name the heimdall binary');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });

/** Starts `heimdall demo` on a free port and resolves to its base URL and process. */
function startDemo(env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['demo', '--port', '0'], {
      env: { PATH: process.env.PATH, LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    let base;
    const timer = setTimeout(() => reject(new Error(`the demo did not start: ${out}`)), 60_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      base ??= out.match(/http:\/\/127\.0\.0\.1:\d+/)?.[0];
      if (base && out.includes('Stop with Ctrl-C')) {
        clearTimeout(timer);
        resolve({ base, child });
      }
    });
    child.on('exit', (code) => reject(new Error(`the demo exited (${code}): ${out}`)));
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on('exit', resolve);
    child.kill('SIGTERM');
  });
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const axe = { pages: 0, serious: 0, critical: 0, findings: [] };

/** Runs axe-core on the page (its context bypasses the console's CSP only to inject axe) and saves a shot. */
async function check(page, name) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => await window.axe.run(document));
  axe.pages += 1;
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      axe[v.impact] += 1;
      axe.findings.push(`${name}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
    }
  }
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Signs in through the provider's page by clicking; lands on `landing` (where an administrator starts). */
async function signIn(page, base, subject, landing = '/console/groups') {
  await page.goto(`${base}/console`);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: `Sign in as ${subject}` }).click();
  await page.waitForURL(`${base}${landing}`);
}

const tests = [];
const test = (name, body) => tests.push({ name, body });

test("an admin's whole day", async () => {
  const { base, child } = await startDemo();
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  try {
    await page.goto(`${base}/console`);
    await check(page, 'sign-in');
    await signIn(page, base, 'demo-admin');
    await check(page, 'groups');

    await page.getByLabel('Name', { exact: true }).fill('team:web');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.waitForURL(`${base}/console/groups/team:web`);
    await page.getByLabel('Subject', { exact: true }).fill('alice');
    await page.getByRole('button', { name: 'Add member' }).click();
    assert(await page.getByRole('cell', { name: 'alice', exact: true }).isVisible(), 'alice is a member');

    await page.getByRole('link', { name: 'Roles' }).click();
    await check(page, 'roles');
    await page.getByLabel('Name', { exact: true }).fill('web:reader');
    await page.getByRole('button', { name: 'Create role' }).click();
    await page.waitForURL(`${base}/console/roles/web:reader`);
    await page.getByLabel('Action', { exact: true }).fill('web:read');
    await page.getByRole('button', { name: 'Grant' }).click();
    assert(await page.getByRole('cell', { name: 'web:read', exact: true }).isVisible(), 'the permission is listed');
    await check(page, 'role');

    await page.goto(`${base}/console/groups/team:web`);
    await page.getByLabel('Give the group a role').fill('web:reader');
    await page.getByRole('button', { name: 'Assign role' }).click();
    assert(await page.getByRole('link', { name: 'web:reader' }).isVisible(), 'the group holds the role');
    await check(page, 'group');

    await page.getByRole('link', { name: 'Mappings' }).click();
    await page.getByLabel('Method', { exact: true }).fill('GET');
    await page.getByLabel('Path pattern', { exact: true }).fill('/web/:id');
    await page.getByLabel('Action', { exact: true }).fill('web:read');
    await page.getByLabel('Owner group', { exact: true }).fill('team:web');
    await page.getByRole('button', { name: 'Create mapping' }).click();
    assert(await page.getByRole('cell', { name: '/web/:id', exact: true }).isVisible(), 'the mapping is listed');
    // The same again: refused, the reason shown in the form, what was typed kept.
    await page.getByLabel('Method', { exact: true }).fill('GET');
    await page.getByLabel('Path pattern', { exact: true }).fill('/web/:id');
    await page.getByLabel('Action', { exact: true }).fill('web:read');
    await page.getByRole('button', { name: 'Create mapping' }).click();
    assert(await page.getByRole('alert').isVisible(), 'the conflict is shown');
    assert((await page.getByLabel('Path pattern', { exact: true }).inputValue()) === '/web/:id', 'the form keeps its values');
    await check(page, 'mappings');
    // The refusal links the mapping it conflicts with: its edit page.
    await page.getByRole('link', { name: /^See mapping \d+$/ }).click();
    await page.waitForURL(/\/console\/mappings\/\d+$/);
    assert((await page.getByLabel('Owner group', { exact: true }).inputValue()) === 'team:web', 'the mapping to edit');
    await check(page, 'mapping');

    await page.getByRole('link', { name: 'Try a request', exact: true }).click();
    await page.getByLabel('Path', { exact: true }).fill('/web/7');
    await page.getByLabel('Subject', { exact: true }).fill('alice');
    await page.getByRole('button', { name: 'Explain' }).click();
    assert((await page.getByRole('heading', { level: 2 }).first().innerText()).includes('allow'), 'alice is allowed');
    assert(await page.getByText('web:reader (through team:web)').isVisible(), 'the explanation names the role');
    await check(page, 'try');

    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByLabel('Name', { exact: true }).fill('adapter:web');
    await page.getByLabel('mappings:read').check();
    await page.getByRole('button', { name: 'Create API key' }).click();
    const secret = await page.locator('#secret').innerText();
    assert(secret.length > 20, 'the secret is shown');
    await check(page, 'api-key-created');
    await page.getByRole('link', { name: 'API keys' }).click();
    assert(!(await page.content()).includes(secret), 'the secret is shown once');
    await page.getByRole('button', { name: 'Revoke adapter:web' }).click();
    assert(await page.getByRole('cell', { name: 'revoked', exact: true }).isVisible(), 'the key is revoked');
    await check(page, 'api-keys');

    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByLabel('Actor').fill('demo-admin');
    await page.getByRole('button', { name: 'Filter' }).click();
    for (const operation of ['create_group', 'add_member', 'create_role', 'grant_permission', 'assign_group_role',
      'create_mapping', 'create_api_key', 'revoke_api_key']) {
      assert(await page.getByRole('cell', { name: operation, exact: true }).first().isVisible(), `${operation} is audited`);
    }
    await check(page, 'audit');

    await page.getByRole('link', { name: 'Sync status' }).click();
    assert(await page.getByText('Users waiting for a push').isVisible(), 'the outbox is shown');
    await check(page, 'sync');
    await page.getByRole('link', { name: 'My access' }).click();
    await page.waitForURL(`${base}/console/users/demo-admin`);
    await check(page, 'user');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${base}/console`);
    await page.goto(`${base}/console/groups`);
    assert(page.url() === `${base}/console`, 'signed out: sent to sign in');
  } finally {
    await context.close();
    await stop(child);
  }
});

test('a plain user sees only her own access', async () => {
  const { base, child } = await startDemo();
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  try {
    await signIn(page, base, 'alice', '/console/users/alice');
    const menu = await page.getByRole('navigation', { name: 'Main' }).innerText();
    assert(!menu.includes('Groups') && menu.includes('My access'), `her menu: ${menu}`);
    await page.goto(`${base}/console/groups`);
    const alert = await page.getByRole('alert').innerText();
    assert(alert.includes('You administer no groups or mappings'), `the refusal says why: ${alert}`);
    await check(page, 'refused');
  } finally {
    await context.close();
    await stop(child);
  }
});

test("a delegated manager's restricted view, and a forbidden action refused with a clear message", async () => {
  const { base, child } = await startDemo();
  const admin = await browser.newContext();
  const context = await browser.newContext({ bypassCSP: true });
  try {
    // Two teams' groups, made by the superadmin.
    const setup = await admin.newPage();
    await signIn(setup, base, 'demo-admin');
    for (const name of ['go:web', 'rmi:web']) {
      await setup.goto(`${base}/console/groups`);
      await setup.getByLabel('Name', { exact: true }).fill(name);
      await setup.getByRole('button', { name: 'Create group' }).click();
      await setup.waitForURL(`${base}/console/groups/${name}`);
    }
    // bob manages the go: groups and their mappings under /go/.
    const page = await context.newPage();
    await signIn(page, base, 'bob');
    assert(await page.getByRole('heading', { name: 'The groups you manage' }).isVisible(), 'his view is named');
    assert(await page.getByRole('link', { name: 'go:web' }).isVisible(), 'his group is listed');
    assert(!(await page.content()).includes('rmi:web'), 'another team\'s group is not');
    const menu = await page.getByRole('navigation', { name: 'Main' }).innerText();
    assert(!menu.includes('Roles') && !menu.includes('Audit log') && menu.includes('Mappings'), `his menu: ${menu}`);
    await check(page, 'manager-groups');
    await page.getByRole('link', { name: 'go:web' }).click();
    assert(await page.getByRole('cell', { name: 'leads:go', exact: true }).isVisible(), 'who manages the group is shown');
    await page.getByLabel('Subject', { exact: true }).fill('carol');
    await page.getByRole('button', { name: 'Add member' }).click();
    assert(await page.getByRole('cell', { name: 'carol', exact: true }).isVisible(), 'he added a member');
    await check(page, 'manager-group');
    // Another team's group is refused by the server, not only left out.
    await page.goto(`${base}/console/groups/rmi:web`);
    const refused = await page.getByRole('alert').innerText();
    assert(refused.includes('You do not manage group rmi:web'), `the refusal says why: ${refused}`);
    // A mapping outside his path scope: refused in its form, with the reason.
    await page.getByRole('link', { name: 'Mappings' }).click();
    await page.getByLabel('Method', { exact: true }).fill('GET');
    await page.getByLabel('Path pattern', { exact: true }).fill('/admin/:id');
    await page.getByLabel('Action', { exact: true }).fill('admin:read');
    await page.getByLabel('Owner group', { exact: true }).fill('go:web');
    await page.getByRole('button', { name: 'Create mapping' }).click();
    const why = await page.getByRole('alert').innerText();
    assert(why.includes('Not saved') && why.includes('inside the path scope of their right'), `the refusal says why: ${why}`);
    await check(page, 'manager-refused');
    await setup.goto(`${base}/console/mappings`);
    assert(!(await setup.content()).includes('/admin/:id'), 'nothing was created');
  } finally {
    await context.close();
    await admin.close();
    await stop(child);
  }
});

test('a cross-site form post and a post without the CSRF token are refused', async () => {
  const { base, child } = await startDemo();
  // Another site: a page that posts a form to the console.
  const evil = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id="f" method="post" action="${base}/console/groups"><input name="name" value="team:evil">
      <input name="csrf" value="guess"></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.2', r));
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await signIn(page, base, 'demo-admin');
    const csp = (await (await page.request.get(`${base}/console/groups`)).headers())['content-security-policy'];
    assert(csp.includes("default-src 'none'") && !csp.includes('unsafe-inline'), `a strict CSP: ${csp}`);
    await page.goto(`http://127.0.0.2:${evil.address().port}/`);
    await page.waitForURL(`${base}/console`);
    // Same site, no token: 403.
    const forged = await page.request.post(`${base}/console/groups`, { form: { name: 'team:evil' } });
    assert(forged.status() === 403, `a post without the token: ${forged.status()}`);
    await page.goto(`${base}/console/groups?prefix=team`);
    assert(!(await page.content()).includes('team:evil'), 'nothing was created');
  } finally {
    await context.close();
    evil.close();
    await stop(child);
  }
});

test('an expired session is sent to sign in', async () => {
  const { base, child } = await startDemo({ CONSOLE_SESSION_TTL_SECONDS: '2' });
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await signIn(page, base, 'demo-admin');
    await page.waitForTimeout(2500);
    await page.goto(`${base}/console/roles`);
    assert(page.url() === `${base}/console`, `expired: sent to sign in, not ${page.url()}`);
  } finally {
    await context.close();
    await stop(child);
  }
});

test('the main flow with the keyboard alone', async () => {
  const { base, child } = await startDemo();
  const context = await browser.newContext();
  const page = await context.newPage();
  /** Presses Tab until the focused element matches `wanted`, then returns. */
  async function tabTo(wanted, what) {
    for (let i = 0; i < 60; i += 1) {
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => {
        const e = document.activeElement;
        return `${e?.tagName} ${e?.id ?? ''} ${e?.textContent?.trim() ?? ''}`;
      });
      if (wanted.test(focused)) return;
    }
    throw new Error(`could not reach ${what} with Tab`);
  }
  try {
    await page.goto(`${base}/console`);
    await tabTo(/^A .*Sign in/, 'the sign-in link');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/authorize\?/);
    await tabTo(/^BUTTON .*Sign in as demo-admin/, 'the provider\'s button');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/console/groups`);
    await tabTo(/^INPUT name/, 'the new group\'s name');
    await page.keyboard.type('team:keys');
    await tabTo(/^BUTTON .*Create group/, 'the create button');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/console/groups/team:keys`);
    await tabTo(/^INPUT subject/, 'the member field');
    await page.keyboard.type('alice');
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
    assert(await page.getByRole('cell', { name: 'alice', exact: true }).isVisible(), 'alice was added with the keyboard');
  } finally {
    await context.close();
    await stop(child);
  }
});

let passed = 0;
let failed = 0;
for (const { name, body } of tests) {
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAILED - ${name}: ${e.stack ?? e}`);
  }
}
await browser.close();
for (const finding of axe.findings) console.log(`axe: ${finding}`);
console.log(`screenshots in ${SHOTS}`);
console.log(`console: ${passed} passed, ${failed} failed`);
console.log(`axe: pages=${axe.pages} serious=${axe.serious} critical=${axe.critical}`);
process.exit(failed > 0 || axe.serious > 0 || axe.critical > 0 ? 1 : 0);
