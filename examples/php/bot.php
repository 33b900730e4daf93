<?php
// A mod_component_http bot in PHP, beyond the echo bot.
//
//     BOT_SECRET=... php -S 127.0.0.1:8080 examples/php/bot.php
//
// Prosody side:
//     Component "bot.example.com" "component_http"
//         component_post_url = "http://127.0.0.1:8080/"
//         component_post_stanzas = { "message", "iq" }
//         component_post_secret = "..."   -- the same as BOT_SECRET
//
// It checks X-Signature, answers a retried request (same X-Delivery-Id) with the answer it
// already gave (kept in files under the system's temporary directory), and shows a chat
// reply, a headline ("news") and an iq answered with a stanza. "ping me" shows a message sent on
// the bot's own initiative: POSTed to the component's push endpoint (PUSH_URL, e.g.
// http://bot.example.com:5280/component_http, with PUSH_TOKEN equal to
// component_post_push_credentials); php -S answers one request at a time, so it is sent before
// the reply.

$secret = getenv('BOT_SECRET') ?: '';
$body = file_get_contents('php://input');

if ($secret !== '') {
    $timestamp = $_SERVER['HTTP_X_SIGNATURE_TIMESTAMP'] ?? '';
    $expected = 'sha256=' . hash_hmac('sha256', $timestamp . '.' . $body, $secret);
    if (!ctype_digit($timestamp) || abs(time() - (int)$timestamp) > 300
        || !hash_equals($expected, $_SERVER['HTTP_X_SIGNATURE'] ?? '')) {
        http_response_code(401);
        exit;
    }
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
