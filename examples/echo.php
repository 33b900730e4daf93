<?php 

// Receive and decode message JSON
$post_data = file_get_contents('php://input');
$received = json_decode($post_data)->body;

// Send response
header('Content-Type: application/json');
echo json_encode(array(
        'body' => "Did you say $received?"
));

?>
