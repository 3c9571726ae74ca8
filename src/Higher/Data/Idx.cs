using System.Buffers.Binary;
using System.IO.Compression;

namespace Higher.Data;

/// <summary>Element types of the IDX format (the third byte of the magic number).</summary>
public enum IdxType : byte
{
    /// <summary>Unsigned byte.</summary>
    UInt8 = 0x08,
    /// <summary>Signed byte.</summary>
    Int8 = 0x09,
    /// <summary>Big-endian 16-bit integer.</summary>
    Int16 = 0x0B,
    /// <summary>Big-endian 32-bit integer.</summary>
    Int32 = 0x0C,
    /// <summary>Big-endian IEEE single.</summary>
    Float32 = 0x0D,
    /// <summary>Big-endian IEEE double.</summary>
    Float64 = 0x0E,
}

/// <summary>
/// The contents of an IDX file: its element type, dimensions and the values as stored (big-endian),
/// decoded on demand, so a 47 MB image file is held once and converted straight to the tensor's dtype.
/// </summary>
public sealed class IdxArray
{
    private readonly byte[] _data;
    private readonly int[] _dims;

    internal IdxArray(IdxType type, int[] dims, byte[] data)
    {
        Type = type;
        _dims = dims;
        _data = data;
        Count = data.LongLength / Idx.ElementSize(type);
    }

    /// <summary>The stored element type.</summary>
    public IdxType Type { get; }

    /// <summary>The dimensions.</summary>
    public IReadOnlyList<int> Dims => _dims;

    /// <summary>The number of elements.</summary>
    public long Count { get; }

    /// <summary>Element <paramref name="index"/> (row-major), exactly, as a double.</summary>
    public double this[long index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
            return Decode(index);
        }
    }

    /// <summary>All elements as doubles (exact for every IDX type).</summary>
    public double[] ToDoubleArray()
    {
        var values = new double[Count];
        for (long i = 0; i < values.LongLength; i++)
        {
            values[i] = Decode(i);
        }
        return values;
    }

    /// <summary>
    /// The values as a tensor of <paramref name="dtype"/>, each multiplied by <paramref name="scale"/>
    /// (e.g. 1/255 for pixel bytes); Int64 keeps integers (for labels; a fractional product truncates).
    /// </summary>
    public Tensor ToTensor(DType dtype = DType.Float32, double scale = 1)
    {
        var shape = new Shape(_dims);
        switch (dtype)
        {
            case DType.Float32:
                {
                    var values = new float[Count];
                    for (long i = 0; i < values.LongLength; i++)
                    {
                        values[i] = (float)(Decode(i) * scale);
                    }
                    return Tensor.FromArray(values, shape);
                }
            case DType.Float64:
                {
                    var values = ToDoubleArray();
                    if (scale != 1)
                    {
                        for (long i = 0; i < values.LongLength; i++)
                        {
                            values[i] *= scale;
                        }
                    }
                    return Tensor.FromArray(values, shape);
                }
            case DType.Int64:
                {
                    var values = new long[Count];
                    for (long i = 0; i < values.LongLength; i++)
                    {
                        values[i] = (long)(Decode(i) * scale);
                    }
                    return Tensor.FromArray(values, shape);
                }
            default:
                throw new ArgumentException($"IDX values convert to Float32, Float64 or Int64, not {dtype.Name()}.", nameof(dtype));
        }
    }

    private double Decode(long i) => Type switch
    {
        IdxType.UInt8 => _data[i],
        IdxType.Int8 => (sbyte)_data[i],
        IdxType.Int16 => BinaryPrimitives.ReadInt16BigEndian(_data.AsSpan(checked((int)(i * 2)), 2)),
        IdxType.Int32 => BinaryPrimitives.ReadInt32BigEndian(_data.AsSpan(checked((int)(i * 4)), 4)),
        IdxType.Float32 => BinaryPrimitives.ReadSingleBigEndian(_data.AsSpan(checked((int)(i * 4)), 4)),
        _ => BinaryPrimitives.ReadDoubleBigEndian(_data.AsSpan(checked((int)(i * 8)), 8)),
    };
}

/// <summary>
/// Reader of the IDX format of MNIST and Fashion-MNIST: a magic number 0x00 0x00 type rank, then
/// rank big-endian 32-bit dimensions, then the values, big-endian. Gzip'ed files (recognized by
/// their header, whatever their name) are decompressed on the fly.
/// </summary>
public static class Idx
{
    /// <summary>Reads the IDX file at <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a well-formed IDX file; the message names the file and says why.</exception>
    public static IdxArray Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"No IDX file at '{path}'.", path);
        }
        using var file = File.OpenRead(path);
        try
        {
            return Read(file);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Reads an IDX stream (plain or gzip'ed) from its current position; the stream is left open.</summary>
    public static IdxArray Read(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var head = new byte[4];
        ReadExactly(stream, head, "the magic number");
        if (head[0] == 0x1F && head[1] == 0x8B)
        {
            using var gzip = new GZipStream(new PrefixedStream(head, stream), CompressionMode.Decompress);
            ReadExactly(gzip, head, "the magic number");
            return ReadBody(gzip, head);
        }
        return ReadBody(stream, head);
    }

    /// <summary>Images: the values as Float32 scaled by 1/255 (for uint8 pixels).</summary>
    public static Tensor ReadImages(string path) => Read(path).ToTensor(DType.Float32, 1.0 / 255);

    /// <summary>Labels: the values as Int64.</summary>
    public static Tensor ReadLabels(string path) => Read(path).ToTensor(DType.Int64);

    internal static int ElementSize(IdxType type) => type switch
    {
        IdxType.UInt8 or IdxType.Int8 => 1,
        IdxType.Int16 => 2,
        IdxType.Int32 or IdxType.Float32 => 4,
        _ => 8,
    };

    private static IdxArray ReadBody(Stream s, byte[] magic)
    {
        if (magic[0] != 0 || magic[1] != 0)
        {
            throw new InvalidDataException($"Bad IDX magic number 0x{magic[0]:X2}{magic[1]:X2}{magic[2]:X2}{magic[3]:X2}: it must start with two zero bytes.");
        }
        var type = (IdxType)magic[2];
        if (!Enum.IsDefined(type))
        {
            throw new InvalidDataException($"Unknown IDX element type 0x{magic[2]:X2} (known: 08, 09, 0B, 0C, 0D, 0E).");
        }
        int rank = magic[3];
        var dims = new int[rank];
        var word = new byte[4];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            ReadExactly(s, word, $"dimension {i}");
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(word);
            if (dims[i] < 0)
            {
                throw new InvalidDataException($"IDX dimension {i} is negative ({dims[i]}).");
            }
            count *= dims[i];
        }
        long bytes = count * ElementSize(type);
        if (bytes > Array.MaxLength)
        {
            throw new InvalidDataException($"IDX array [{string.Join(", ", dims)}] of {type} is too large to load.");
        }
        var data = new byte[bytes];
        ReadExactly(s, data, $"{count} values of type {type}");
        return new IdxArray(type, dims, data);
    }

    private static void ReadExactly(Stream s, byte[] buffer, string what)
    {
        try
        {
            s.ReadExactly(buffer);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"The IDX data ends early, while reading {what}.", e);
        }
    }

    /// <summary>Replays bytes already consumed before the rest of a stream (to sniff the gzip header without seeking); never closes the rest.</summary>
    private sealed class PrefixedStream(byte[] head, Stream rest) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_position < head.Length)
            {
                int n = Math.Min(buffer.Length, head.Length - _position);
                head.AsSpan(_position, n).CopyTo(buffer);
                _position += n;
                return n;
            }
            return rest.Read(buffer);
        }
    }
}
