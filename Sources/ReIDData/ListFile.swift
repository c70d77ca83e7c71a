import Foundation

// MARK: Text list files (MSMT17's list_*.txt, the generic `list` dataset)
//
// List files come from outside, so every line is checked: field count,
// integers in range, relative paths that stay inside the dataset folder, no
// line listed twice. The first bad line stops the load with one error naming
// the file and the line. Foundation only (Tests/fuzz builds this file alone).

/// A list file that cannot be used: names the file, and the line when there is one.
public struct ListFileError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
    init(file: String, line: Int, _ message: String) { self.description = "\(file) line \(line): \(message)" }
}

/// One non-blank, non-comment line, split into fields at spaces and tabs.
struct ListLine {
    var number: Int   // 1-based
    var fields: [Substring]
}

/// Largest list file read (MSMT17's largest list, list_gallery.txt, is about 4 MB).
let maxListFileBytes = 256 << 20

/// Reads a list file; a missing or unreadable file is an error naming it and
/// `what` it should hold. Only regular files (a symbolic link to one is fine):
/// a FIFO named list.txt would block the load forever.
func readListFile(_ path: String, what: String) throws -> Data {
    var st = stat()
    guard stat(path, &st) == 0 else { throw ListFileError("\(path): missing list file (expected \(what))") }
    guard st.st_mode & S_IFMT != S_IFDIR else { throw ListFileError("\(path): a folder, not a list file (expected \(what))") }
    guard st.st_mode & S_IFMT == S_IFREG else { throw ListFileError("\(path): not a regular file (expected \(what))") }
    guard st.st_size <= maxListFileBytes else {
        throw ListFileError("\(path): \(st.st_size) bytes, more than a list file may hold (\(maxListFileBytes))")
    }
    guard let data = FileManager.default.contents(atPath: path) else { throw ListFileError("\(path): cannot read it") }
    guard data.count <= maxListFileBytes else { throw ListFileError("\(path): more than \(maxListFileBytes) bytes") }
    return data
}

/// Splits a list file into lines of fields. Blank lines are skipped, and so are
/// lines starting with `#` when `comments`; a trailing `\r` (Windows line ends)
/// and a UTF-8 byte order mark are dropped. Text must be UTF-8 without control characters.
func listLines(_ data: Data, file: String, comments: Bool) throws -> [ListLine] {
    var lines: [ListLine] = []
    var number = 0
    for var bytes in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        number += 1
        if number == 1 && bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw ListFileError(file: file, line: number, "not UTF-8 text")
        }
        if let bad = text.unicodeScalars.first(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F }) {
            throw ListFileError(file: file, line: number, "control character U+\(String(format: "%04X", bad.value)) in the line")
        }
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if fields.isEmpty || (comments && fields[0].hasPrefix("#")) { continue }
        lines.append(ListLine(number: number, fields: fields))
    }
    return lines
}

/// A relative image path that stays inside the dataset folder: not absolute, no
/// `..` component, no empty path. Returned without `./` components.
func checkedRelativePath(_ field: Substring, file: String, line: Int) throws -> String {
    guard !field.hasPrefix("/") else {
        throw ListFileError(file: file, line: line, "'\(field)' is an absolute path (paths are relative to the dataset folder)")
    }
    guard field.utf8.count <= 4096 else { throw ListFileError(file: file, line: line, "path longer than 4096 bytes") }
    let parts = field.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
    guard !parts.contains("..") else {
        throw ListFileError(file: file, line: line, "'\(field)' leaves the dataset folder (no '..' in paths)")
    }
    guard !parts.isEmpty else { throw ListFileError(file: file, line: line, "'\(field)' names no file") }
    return parts.joined(separator: "/")
}

/// A decimal integer (optional leading '-', at most 10 digits) within `range`.
func checkedInteger(_ field: Substring, _ range: ClosedRange<Int>, what: String, file: String, line: Int) throws -> Int {
    let digits = field.hasPrefix("-") ? field.dropFirst() : field
    guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(field) else {
        throw ListFileError(file: file, line: line, "\(what) '\(field)' is not an integer")
    }
    guard range.contains(value) else {
        throw ListFileError(file: file, line: line, "\(what) \(value) is out of range (\(range.lowerBound)...\(range.upperBound))")
    }
    return value
}

/// Largest pid and camera id a list may hold (they are stored as 32-bit integers elsewhere).
let maxListID = Int(Int32.max)

// MARK: The generic list dataset: `path pid camid split`

/// The three splits of a list dataset.
public enum ListSplit: String, CaseIterable, Sendable {
    case train, query, gallery
}

/// One image of a list dataset. `pid` -1 is junk (dropped by the loader, as in Market-1501).
struct ImageListEntry: Equatable {
    var path: String
    var pid: Int
    var camera: Int
    var split: ListSplit
    var line: Int
}

/// Parses a list dataset's file: lines `path pid camid split` (fields separated
/// by spaces or tabs; `#` starts a comment line). pid is -1 (junk) or
/// 0...2^31-1, camid 0...2^31-1 (compared, not counted from 0 or 1), split
/// train, query or gallery. A path may appear once per split; in two splits
/// only with the same pid and camid.
func parseImageList(_ data: Data, file: String) throws -> [ImageListEntry] {
    var entries: [ImageListEntry] = []
    var seen: [String: [ListSplit: Int]] = [:]   // path -> split -> index in entries
    for line in try listLines(data, file: file, comments: true) {
        let n = line.number, f = line.fields
        guard f.count == 4 else {
            throw ListFileError(file: file, line: n, "expected 4 fields 'path pid camid split', found \(f.count)")
        }
        let path = try checkedRelativePath(f[0], file: file, line: n)
        let pid = try checkedInteger(f[1], -1...maxListID, what: "pid", file: file, line: n)
        let camera = try checkedInteger(f[2], 0...maxListID, what: "camid", file: file, line: n)
        guard let split = ListSplit(rawValue: String(f[3])) else {
            throw ListFileError(file: file, line: n, "split '\(f[3])' is not one of \(ListSplit.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let entry = ImageListEntry(path: path, pid: pid, camera: camera, split: split, line: n)
        for (otherSplit, index) in seen[path] ?? [:] {
            let other = entries[index]
            if otherSplit == split {
                throw ListFileError(file: file, line: n, "\(path) is already listed in \(split.rawValue) at line \(other.line)")
            }
            if other.pid != pid || other.camera != camera {
                throw ListFileError(file: file, line: n, "\(path) has pid \(pid) camid \(camera) here but pid \(other.pid) camid \(other.camera) at line \(other.line)")
            }
        }
        seen[path, default: [:]][split] = entries.count
        entries.append(entry)
    }
    return entries
}

// MARK: MSMT17's list_{train,val,query,gallery}.txt: `path pid`

/// One line of an MSMT17 list: the camera (1-based) is the third `_` field of
/// the file name, e.g. `0000/0000_000_01_0303morning_0015_0.jpg` is camera 1.
struct MSMT17Entry: Equatable {
    var path: String
    var pid: Int
    var camera: Int
    var line: Int
}

/// MSMT17's camera from a file name (`0000_000_01_0303morning_0015_0.jpg` -> 1), or nil.
func msmt17Camera(fileName: Substring) -> Int? {
    let parts = fileName.split(separator: "_", omittingEmptySubsequences: false)
    guard parts.count >= 4, (1...4).contains(parts[2].count), parts[2].allSatisfy({ $0.isASCII && $0.isNumber }),
          let camera = Int(parts[2]), camera >= 1 else { return nil }
    return camera
}

/// Parses one MSMT17 list: lines `path pid` (pid 0...2^31-1), no path twice.
func parseMSMT17List(_ data: Data, file: String) throws -> [MSMT17Entry] {
    var entries: [MSMT17Entry] = []
    var seen: [String: Int] = [:]
    for line in try listLines(data, file: file, comments: false) {
        let n = line.number, f = line.fields
        guard f.count == 2 else { throw ListFileError(file: file, line: n, "expected 2 fields 'path pid', found \(f.count)") }
        let path = try checkedRelativePath(f[0], file: file, line: n)
        let pid = try checkedInteger(f[1], 0...maxListID, what: "pid", file: file, line: n)
        guard let camera = msmt17Camera(fileName: path.split(separator: "/").last!) else {
            throw ListFileError(file: file, line: n, "no camera in the name \(path) (MSMT17 names are like 0000_000_01_0303morning_0015_0.jpg: camera 01 is the third field)")
        }
        if let first = seen[path] { throw ListFileError(file: file, line: n, "\(path) is already listed at line \(first)") }
        seen[path] = n
        entries.append(MSMT17Entry(path: path, pid: pid, camera: camera, line: n))
    }
    return entries
}
