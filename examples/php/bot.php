<?php
// A mod_component_http bot in PHP, beyond the echo bot.
//
//     BOT_SECRET=... php examples/php/bot.php [PORT]      (default port 8080)
//
// which checks its settings and then serves this file with PHP's built-in web server, as
// `php -S 127.0.0.1:PORT examples/php/bot.php` would. It refuses to start without BOT_SECRET;
// BOT_INSECURE=1 instead accepts unsigned requests from anyone (for trying it out without a
// secret, never exposed). Served by `php -S` or any other web server without either, it answers
// every request with 500 and logs why.
//
// Prosody side:
//     Component "bot.example.com" "component_http"
//         component_post_url = "http://127.0.0.1:8080/"
//         component_post_stanzas = { "message", "iq" }
//         component_post_secret = "..."   -- the same as BOT_SECRET
//
// It checks X-Signature (README, Signatures: an HMAC-SHA256 over the timestamp, X-Delivery-Id,
// X-Retry-Count and the body), answers a retried request (same X-Delivery-Id) with the answer it
// already gave (kept in files under the system's temporary directory; as the delivery id is
// signed, a replayed request is such a duplicate too), and shows a chat reply, a headline
// ("news") and an iq answered with a stanza. "ping me" shows a message sent on the bot's own
// initiative: POSTed to the component's push endpoint (PUSH_URL, e.g.
// http://bot.example.com:5280/component_http, with PUSH_TOKEN equal to
// component_post_push_credentials); php -S answers one request at a time, so it is sent before
// the reply.

const NO_SECRET = "BOT_SECRET is not set: set it to the component's component_post_secret, "
    . 'or set BOT_INSECURE=1 to accept unsigned requests from anyone';
$secret = getenv('BOT_SECRET') ?: '';
$insecure = getenv('BOT_INSECURE') === '1';

if (PHP_SAPI === 'cli') { // run as `php bot.php [PORT]`
    if ($secret === '' && !$insecure) {
        fwrite(STDERR, NO_SECRET . "\n");
        exit(1);
    }
    if ($secret === '') {
        fwrite(STDERR, "BOT_INSECURE=1: signatures are not checked\n");
    }
    if (function_exists('pcntl_exec')) { // the same process becomes the web server
        pcntl_exec(PHP_BINARY, ['-S', '127.0.0.1:' . ($argv[1] ?? '8080'), __FILE__]);
    }
    fwrite(STDERR, 'could not start the web server: run php -S 127.0.0.1:PORT ' . __FILE__ . "\n");
    exit(1);
}
if ($secret === '' && !$insecure) {
    error_log(NO_SECRET);
    http_response_code(500);
    exit;
}

function verified(string $secret, array $server, string $body): bool {
    $timestamp = $server['HTTP_X_SIGNATURE_TIMESTAMP'] ?? '';
    $delivery = $server['HTTP_X_DELIVERY_ID'] ?? '';
    $retry = $server['HTTP_X_RETRY_COUNT'] ?? '';
    $expected = 'sha256=' . hash_hmac('sha256', "v1\n$timestamp\n$delivery\n$retry\n" . $body, $secret);
    return ctype_digit($timestamp) && abs(time() - (int)$timestamp) <= 300
        && hash_equals($expected, $server['HTTP_X_SIGNATURE'] ?? '');
}

$body = file_get_contents('php://input');
if ($secret !== '' && !verified($secret, $_SERVER, $body)) {
    http_response_code(401);
    exit;
}

function answer(array $stanza, int $handled): array {
    if ($stanza['kind'] === 'iq') {
        // The top element's type, without needing PHP's XML extension.
        $get = preg_match('/^<iq\b[^>]*\btype=([\'"])get\1/', $stanza['stanza']);
        if ($get && str_contains($stanza['stanza'], 'jabber:iq:version')) {
            return [200, ['stanza' => "<iq type='result'><query xmlns='jabber:iq:version'>"
                . "<name>php example bot</name><version>1.0</version></query></iq>"]];
        }
        return [501, null]; // feature-not-implemented, for every other iq
    }
    if (!isset($stanza['body'])) {
        return [204, null]; // a chat state, a receipt...: nothing to say
    }
    if (strtolower(trim($stanza['body'])) === 'ping me' && getenv('PUSH_URL')) {
        $message = json_encode(['to' => $stanza['from'], 'from' => $stanza['to'], 'body' => 'ping!']);
        file_get_contents(getenv('PUSH_URL'), false, stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/json\r\nAuthorization: " . getenv('PUSH_TOKEN'),
            'content' => $message,
        ]]));
        return [200, ['body' => 'Sent you a ping.']];
    }
    if (strtolower(trim($stanza['body'])) === 'news') {
        return [200, ['type' => 'headline', 'body' => 'Nothing new today.']];
    }
    return [200, ['body' => "You said: {$stanza['body']} (#$handled)"]];
}

// One file per answer, named after the delivery id; a lock keeps the count and the dedup right
// when requests come in concurrently.
$dir = sys_get_temp_dir() . '/mod_component_http-php-bot';
@mkdir($dir);
$lock = fopen("$dir/lock", 'c+');
flock($lock, LOCK_EX);
$file = $dir . '/' . hash('sha256', $_SERVER['HTTP_X_DELIVERY_ID'] ?? uniqid()) . '.json';
if (is_file($file)) {
    [$status, $reply] = json_decode(file_get_contents($file), true);
} else {
    $handled = (int)@file_get_contents("$dir/count") + 1;
    file_put_contents("$dir/count", $handled);
    [$status, $reply] = answer(json_decode($body, true), $handled);
    file_put_contents($file, json_encode([$status, $reply]));
    if ($handled % 1000 === 0) {
        // A retry comes within the module's deadline (component_post_timeout): an hour is plenty.
        foreach (glob("$dir/*.json") as $old) {
            if (filemtime($old) < time() - 3600) {
                @unlink($old);
            }
        }
    }
}
flock($lock, LOCK_UN);

http_response_code($status);
if ($reply !== null) {
    header('Content-Type: application/json');
    echo json_encode($reply);
}
