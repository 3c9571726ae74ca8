using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Serialization;

/// <summary>
/// Tensors in the safetensors format (huggingface/safetensors), the file PyTorch users exchange
/// weights in: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each name to
/// <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (offsets into the data that follows) plus an
/// optional <c>"__metadata__"</c> object of strings, then the little-endian element bytes. Files
/// written here are read by <c>safetensors.torch.load_file</c>; files written by PyTorch load here.
/// Higher writes F32, F64, I64 and BOOL; it reads those and also F16 and BF16 (as float32) and
/// I32, I16, I8 and U8 (as int64).
/// </summary>
public static class SafeTensors
{
    /// <summary>The largest header accepted (the reference implementation's limit, 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    /// <summary>Writes <paramref name="tensors"/> (and string <paramref name="metadata"/>) to <paramref name="path"/>.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        File.WriteAllBytes(path, Serialize(tensors, metadata));
    }

    /// <summary>
    /// The file's bytes: tensors in ordinal name order, each tensor's elements row-major, the header
    /// padded with spaces to a multiple of 8 bytes (as the reference writer does), so the same
    /// tensors always give the same bytes.
    /// </summary>
    public static byte[] Serialize(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        EnsureLittleEndian();
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        var blobs = new byte[names.Length][];
        for (int i = 0; i < names.Length; i++)
        {
            if (names[i] == MetadataKey)
            {
                throw new ArgumentException($"SafeTensors.Serialize: '{MetadataKey}' is reserved for the metadata and cannot name a tensor.", nameof(tensors));
            }
            var t = tensors[names[i]] ?? throw new ArgumentException($"SafeTensors.Serialize: tensor '{names[i]}' is null.", nameof(tensors));
            blobs[i] = t.DType switch
            {
                DType.Float32 => MemoryMarshal.AsBytes(t.ToFloatArray().AsSpan()).ToArray(),
                DType.Float64 => MemoryMarshal.AsBytes(t.ToDoubleArray().AsSpan()).ToArray(),
                DType.Int64 => MemoryMarshal.AsBytes(t.ToInt64Array().AsSpan()).ToArray(),
                DType.Bool => MemoryMarshal.AsBytes(t.ToBoolArray().AsSpan()).ToArray(),
                _ => throw new ArgumentException($"SafeTensors.Serialize: tensor '{names[i]}' has dtype {t.DType}, which has no safetensors code here.", nameof(tensors)),
            };
        }

        using var headerStream = new MemoryStream();
        using (var w = new Utf8JsonWriter(headerStream))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WriteString(k, v);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            for (int i = 0; i < names.Length; i++)
            {
                var t = tensors[names[i]];
                w.WriteStartObject(names[i]);
                w.WriteString("dtype", Code(t.DType));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape.ToArray())
                {
                    w.WriteNumberValue(d);
                }
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + blobs[i].Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += blobs[i].Length;
            }
            w.WriteEndObject();
        }
        var header = headerStream.ToArray();
        int padded = (header.Length + 7) / 8 * 8;
        long total = 8 + padded + blobs.Sum(b => (long)b.Length);
        var bytes = new byte[total];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)padded);
        header.CopyTo(bytes, 8);
        bytes.AsSpan(8 + header.Length, padded - header.Length).Fill((byte)' ');
        long at = 8 + padded;
        foreach (var b in blobs)
        {
            b.CopyTo(bytes, at);
            at += b.Length;
        }
        return bytes;
    }

    /// <summary>Reads every tensor and the metadata of the file at <paramref name="path"/> onto <paramref name="device"/> (the CPU by default).</summary>
    public static SafeTensorsContent Load(string path, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Deserialize(File.ReadAllBytes(path), device, path);
    }

    /// <summary>
    /// Parses safetensors bytes. Throws <see cref="InvalidDataException"/> naming <paramref name="source"/>
    /// and the tensor when the header is malformed, a dtype is unknown, a tensor's byte range does
    /// not match its shape, or the ranges overlap, leave gaps or run past the end.
    /// </summary>
    public static SafeTensorsContent Deserialize(ReadOnlySpan<byte> bytes, Device? device = null, string source = "safetensors buffer")
    {
        EnsureLittleEndian();
        if (bytes.Length < 8)
        {
            throw new InvalidDataException($"{source}: {bytes.Length} bytes is too short for a safetensors file (8-byte header length missing).");
        }
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > MaxHeaderBytes || (long)n > bytes.Length - 8)
        {
            throw new InvalidDataException($"{source}: header length {n} does not fit the file ({bytes.Length} bytes) or exceeds {MaxHeaderBytes}.");
        }
        var data = bytes[(8 + (int)n)..];
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes.Slice(8, (int)n)).TrimEnd(' '));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: the header is not valid JSON ({e.Message}).", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{source}: the header must be a JSON object.");
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<(string Name, string DType, int[] Shape, long Begin, long End)>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == MetadataKey)
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                    {
                        throw new InvalidDataException($"{source}: '{MetadataKey}' must be an object of strings.");
                    }
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String
                            ? m.Value.GetString()!
                            : throw new InvalidDataException($"{source}: metadata '{m.Name}' is not a string.");
                    }
                    continue;
                }
                entries.Add(ParseEntry(prop, source));
            }

            // The data must be exactly the concatenation of the tensors' ranges.
            long expected = 0;
            foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
            {
                if (e.Begin != expected)
                {
                    throw new InvalidDataException($"{source}: tensor '{e.Name}' starts at byte {e.Begin} of the data, expected {expected} (ranges overlap or leave a gap).");
                }
                expected = e.End;
            }
            if (expected != data.Length)
            {
                throw new InvalidDataException($"{source}: the tensors cover {expected} bytes of data but the file has {data.Length}.");
            }

            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (name, code, shape, begin, end) in entries)
            {
                tensors[name] = Decode(data[(int)begin..(int)end], code, shape, device, name, source);
            }
            return new SafeTensorsContent(tensors, metadata);
        }
    }

    /// <summary>Writes a module's state dict (parameters and persistent buffers, by dotted name), as <c>safetensors.torch.save_model</c>.</summary>
    public static void SaveModel(Module module, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        Save(path, module.StateDict(), metadata);
    }

    /// <summary>
    /// Loads a state dict file into <paramref name="module"/>, as <c>safetensors.torch.load_model</c>.
    /// Strict (the default): a missing or unexpected key, or a shape mismatch, throws naming the file,
    /// the key and both shapes, and the module is unchanged. Values are converted to the module's dtypes.
    /// </summary>
    public static void LoadModel(Module module, string path, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        var content = Load(path);
        try
        {
            module.LoadStateDict(content.Tensors, strict);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"LoadModel('{path}'): {e.Message}", nameof(path), e);
        }
    }

    /// <summary>
    /// Writes an optimizer's state (<see cref="Optimizer.StateDict"/>): each state tensor as
    /// <c>state.{parameter index}.{name}</c>, the steps, the groups' hyperparameters and parameter
    /// indices and the optimizer's type in the metadata.
    /// </summary>
    public static void SaveOptimizer(Optimizer optimizer, string path)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        var sd = optimizer.StateDict();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var steps = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (index, state) in sd.State)
        {
            steps[index.ToString(CultureInfo.InvariantCulture)] = state.Step.ToString(CultureInfo.InvariantCulture);
            foreach (var (name, t) in state.Tensors)
            {
                tensors[$"state.{index}.{name}"] = t;
            }
        }
        using var groups = new MemoryStream();
        using (var w = new Utf8JsonWriter(groups))
        {
            w.WriteStartArray();
            foreach (var (options, ids) in sd.Groups)
            {
                w.WriteStartObject();
                w.WriteStartObject("options");
                foreach (var (k, v) in options.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WriteString(k, v.ToString("R", CultureInfo.InvariantCulture));
                }
                w.WriteEndObject();
                w.WriteStartArray("params");
                foreach (int id in ids)
                {
                    w.WriteNumberValue(id);
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        using var stepStream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stepStream))
        {
            w.WriteStartObject();
            foreach (var (k, v) in steps.OrderBy(p => int.Parse(p.Key, CultureInfo.InvariantCulture)))
            {
                w.WriteString(k, v);
            }
            w.WriteEndObject();
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["format"] = OptimizerFormat,
            ["optimizer"] = optimizer.GetType().Name,
            ["param_groups"] = Encoding.UTF8.GetString(groups.ToArray()),
            ["steps"] = Encoding.UTF8.GetString(stepStream.ToArray()),
        };
        Save(path, tensors, metadata);
    }

    /// <summary>
    /// Restores an optimizer's state written by <see cref="SaveOptimizer"/>; throws naming the file
    /// when it holds another optimizer type or another group layout, and the optimizer is unchanged.
    /// State tensors move to their parameters' devices.
    /// </summary>
    public static void LoadOptimizer(Optimizer optimizer, string path)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        var content = Load(path);
        var md = content.Metadata;
        if (!md.TryGetValue("format", out var format) || format != OptimizerFormat)
        {
            throw new InvalidDataException($"LoadOptimizer('{path}'): not an optimizer state file (metadata 'format' is '{format ?? "absent"}', expected '{OptimizerFormat}').");
        }
        string type = md.GetValueOrDefault("optimizer", "?");
        if (type != optimizer.GetType().Name)
        {
            throw new ArgumentException($"LoadOptimizer('{path}'): the file holds the state of a {type}, not of a {optimizer.GetType().Name}.", nameof(optimizer));
        }
        var groups = new List<(Dictionary<string, double> Options, int[] Params)>();
        var state = new Dictionary<int, ParamState>();
        try
        {
            using (var doc = JsonDocument.Parse(md["param_groups"]))
            {
                foreach (var g in doc.RootElement.EnumerateArray())
                {
                    var options = new Dictionary<string, double>(StringComparer.Ordinal);
                    foreach (var o in g.GetProperty("options").EnumerateObject())
                    {
                        options[o.Name] = double.Parse(o.Value.GetString()!, NumberStyles.Float, CultureInfo.InvariantCulture);
                    }
                    groups.Add((options, [.. g.GetProperty("params").EnumerateArray().Select(p => p.GetInt32())]));
                }
            }
            using (var doc = JsonDocument.Parse(md["steps"]))
            {
                foreach (var s in doc.RootElement.EnumerateObject())
                {
                    state[int.Parse(s.Name, CultureInfo.InvariantCulture)] = new ParamState { Step = long.Parse(s.Value.GetString()!, CultureInfo.InvariantCulture) };
                }
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"LoadOptimizer('{path}'): malformed 'param_groups' or 'steps' metadata ({e.Message}).", e);
        }
        foreach (var (key, t) in content.Tensors)
        {
            var parts = key.Split('.', 3);
            if (parts.Length != 3 || parts[0] != "state" || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int index) || !state.TryGetValue(index, out var ps))
            {
                throw new InvalidDataException($"LoadOptimizer('{path}'): unexpected tensor '{key}' (expected state.<parameter index>.<name> for a parameter listed in 'steps').");
            }
            ps.Tensors[parts[2]] = t;
        }
        try
        {
            optimizer.LoadStateDict(new OptimizerStateDict(groups, state));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"LoadOptimizer('{path}'): {e.Message}", nameof(path), e);
        }
    }

    private const string OptimizerFormat = "higher.optimizer.v1";

    private static (string Name, string DType, int[] Shape, long Begin, long End) ParseEntry(JsonProperty prop, string source)
    {
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
        {
            throw new InvalidDataException($"{source}: tensor '{prop.Name}' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" ([begin, end]).");
        }
        string code = dt.GetString()!;
        int size = ElementSize(code) ?? throw new InvalidDataException($"{source}: tensor '{prop.Name}' has dtype '{code}', which Higher does not read (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL).");
        var shape = new int[sh.GetArrayLength()];
        long numel = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (!d.TryGetInt32(out shape[i]) || shape[i] < 0)
            {
                throw new InvalidDataException($"{source}: tensor '{prop.Name}' has a shape entry {d} that is not a non-negative 32-bit integer.");
            }
            numel *= shape[i++];
        }
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
        {
            throw new InvalidDataException($"{source}: tensor '{prop.Name}' has data_offsets {off} that are not a range.");
        }
        if (end - begin != numel * size)
        {
            throw new InvalidDataException($"{source}: tensor '{prop.Name}' ({code} [{string.Join(", ", shape)}]) needs {numel * size} bytes but its data_offsets [{begin}, {end}] span {end - begin}.");
        }
        return (prop.Name, code, shape, begin, end);
    }

    private static int? ElementSize(string code) => code switch
    {
        "F64" or "I64" => 8,
        "F32" or "I32" => 4,
        "F16" or "BF16" or "I16" => 2,
        "I8" or "U8" or "BOOL" => 1,
        _ => null,
    };

    private static string Code(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Float64 => "F64",
        DType.Int64 => "I64",
        DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "No safetensors code."),
    };

    private static Tensor Decode(ReadOnlySpan<byte> raw, string code, int[] shape, Device? device, string name, string source)
    {
        Shape s = shape;
        switch (code)
        {
            case "F32":
                return Tensor.FromArray(MemoryMarshal.Cast<byte, float>(raw).ToArray(), s, device);
            case "F64":
                return Tensor.FromArray(MemoryMarshal.Cast<byte, double>(raw).ToArray(), s, device);
            case "I64":
                return Tensor.FromArray(MemoryMarshal.Cast<byte, long>(raw).ToArray(), s, device);
            case "BOOL":
            {
                var b = new bool[raw.Length];
                for (int i = 0; i < b.Length; i++)
                {
                    b[i] = raw[i] switch
                    {
                        0 => false,
                        1 => true,
                        _ => throw new InvalidDataException($"{source}: BOOL tensor '{name}' holds byte {raw[i]} at element {i} (only 0 and 1 are booleans)."),
                    };
                }
                return Tensor.FromArray(b, s, device);
            }
            case "F16":
            {
                var h = MemoryMarshal.Cast<byte, Half>(raw);
                var f = new float[h.Length];
                for (int i = 0; i < f.Length; i++)
                {
                    f[i] = (float)h[i];
                }
                return Tensor.FromArray(f, s, device);
            }
            case "BF16":
            {
                var u = MemoryMarshal.Cast<byte, ushort>(raw);
                var f = new float[u.Length];
                for (int i = 0; i < f.Length; i++)
                {
                    f[i] = BitConverter.Int32BitsToSingle(u[i] << 16);
                }
                return Tensor.FromArray(f, s, device);
            }
            default:
            {
                var l = new long[raw.Length / ElementSize(code)!.Value];
                for (int i = 0; i < l.Length; i++)
                {
                    l[i] = code switch
                    {
                        "I32" => BinaryPrimitives.ReadInt32LittleEndian(raw[(4 * i)..]),
                        "I16" => BinaryPrimitives.ReadInt16LittleEndian(raw[(2 * i)..]),
                        "I8" => (sbyte)raw[i],
                        _ => raw[i],
                    };
                }
                return Tensor.FromArray(l, s, device);
            }
        }
    }

    private static void EnsureLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Higher's safetensors reader and writer run on little-endian machines only.");
        }
    }
}

/// <summary>The tensors and metadata of a safetensors file.</summary>
/// <param name="Tensors">Tensors by name.</param>
/// <param name="Metadata">The <c>__metadata__</c> strings (empty when absent).</param>
public sealed record SafeTensorsContent(Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata);
