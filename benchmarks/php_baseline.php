<?php
// The PHP side of benchmarks/search_replace.py.
//
//   php php_baseline.php serialize <structures.json> <values.bin>
//       Serialize the corpus structures with PHP's own serialize(): {"__class__": name, ...} is an
//       object of that class, {"__serialized__": value} a string holding serialize(value).
//   php php_baseline.php replace <values.bin> <pairs.json> <outputs.bin>
//       The naive search-replace most tools do: unserialize() the value, replace in every string
//       (opening strings that hold serialized data, as WP-CLI does), serialize() again; values that
//       do not unserialize get str_replace() on the whole.  Prints a JSON object of the CPU time per
//       category in seconds (CPU time, so that other load on the machine counts less); writes the
//       outputs.
//
// values.bin is a sequence of records: category (1 byte), length (4 bytes, little-endian), bytes.

#[AllowDynamicProperties]
class WP_Theme_Mods {}

function read_records($path) {
    $data = file_get_contents($path);
    $records = [];
    for ($at = 0, $size = strlen($data); $at < $size; $at += 5 + $length) {
        ['category' => $category, 'length' => $length] = unpack('Ccategory/Vlength', $data, $at);
        $records[] = [$category, substr($data, $at + 5, $length)];
    }
    return $records;
}

function write_records($path, $records) {
    $out = fopen($path, 'wb');
    foreach ($records as [$category, $value]) {
        fwrite($out, pack('CV', $category, strlen($value)) . $value);
    }
    fclose($out);
}

function build($structure) {
    if (!is_array($structure)) {
        return $structure;
    }
    if (array_key_exists('__serialized__', $structure)) {
        return serialize(build($structure['__serialized__']));
    }
    if (array_key_exists('__class__', $structure)) {
        $object = new $structure['__class__'];
        foreach ($structure as $name => $item) {
            if ($name !== '__class__') {
                $object->$name = build($item);
            }
        }
        return $object;
    }
    return array_map('build', $structure);
}

// Consecutive pairs of one kind become one str_replace() or preg_replace() call with arrays,
// which apply their pairs in order just like one call per pair.
function replacement_steps($pairs) {
    $steps = [];
    foreach ($pairs as $pair) {
        $host = $pair['pattern'] !== null;
        if (!$steps || end($steps)['host'] !== $host) {
            $steps[] = ['host' => $host, 'search' => [], 'replace' => []];
        }
        $last = count($steps) - 1;
        if ($host) {
            $steps[$last]['search'][] = '/' . $pair['pattern'] . '/';
            $steps[$last]['replace'][] = str_replace(['\\', '$'], ['\\\\', '\\$'], $pair['replace']);
        } else {
            $steps[$last]['search'][] = $pair['search'];
            $steps[$last]['replace'][] = $pair['replace'];
        }
    }
    return $steps;
}

function replace_text($text, $steps) {
    foreach ($steps as $step) {
        $text = $step['host'] ? preg_replace($step['search'], $step['replace'], $text)
                              : str_replace($step['search'], $step['replace'], $text);
    }
    return $text;
}

function unserialized($text, &$value) {
    if (strlen($text) < 2 || strpos('aOsidbNCErR', $text[0]) === false) {
        return false;
    }
    $value = @unserialize($text);
    return $value !== false || $text === 'b:0;';
}

function walk($value, $steps) {
    if (is_string($value)) {
        return unserialized($value, $inner) ? serialize(walk($inner, $steps)) : replace_text($value, $steps);
    }
    if (is_array($value)) {
        foreach ($value as $key => $item) {
            $value[$key] = walk($item, $steps);
        }
    } elseif (is_object($value)) {
        foreach ($value as $name => $item) {
            $value->$name = walk($item, $steps);
        }
    }
    return $value;
}

function cpu_seconds() {
    $usage = getrusage();
    return $usage['ru_utime.tv_sec'] + $usage['ru_stime.tv_sec']
        + ($usage['ru_utime.tv_usec'] + $usage['ru_stime.tv_usec']) / 1e6;
}

function replace_value($text, $steps) {
    return unserialized($text, $value) ? serialize(walk($value, $steps)) : replace_text($text, $steps);
}

[, $command] = $argv;
if ($command === 'serialize') {
    $records = [];
    foreach (json_decode(file_get_contents($argv[2]), true) as [$category, $structure]) {
        $built = build($structure);
        $records[] = [$category, is_string($built) ? $built : serialize($built)];
    }
    write_records($argv[3], $records);
} elseif ($command === 'replace') {
    $by_category = [];
    foreach (read_records($argv[2]) as [$category, $value]) {
        $by_category[$category][] = $value;
    }
    $steps = replacement_steps(json_decode(file_get_contents($argv[3]), true));
    $seconds = [];
    $outputs = [];
    foreach ($by_category as $category => $values) {
        $started = cpu_seconds();
        foreach ($values as $value) {
            $outputs[] = [$category, replace_value($value, $steps)];
        }
        $seconds[$category] = cpu_seconds() - $started;
    }
    write_records($argv[4], $outputs);
    echo json_encode($seconds), "\n";
} else {
    fwrite(STDERR, "usage: php_baseline.php serialize|replace ...\n");
    exit(2);
}
