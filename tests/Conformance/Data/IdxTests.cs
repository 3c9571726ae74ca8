using System.Buffers.Binary;
using System.IO.Compression;
using Higher.Data;

namespace Higher.Conformance.Data;

/// <summary>The IDX reader on small generated files (plain and gzip'ed), its failure twins, and the Fashion-MNIST loader on a generated directory.</summary>
public sealed class IdxTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("higher-idx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes an IDX file: magic 0 0 type rank, big-endian dimensions, big-endian values.</summary>
    private string Write(string name, IdxType type, int[] dims, double[] values, bool gzip = false)
    {
        var bytes = new List<byte> { 0, 0, (byte)type, (byte)dims.Length };
        Span<byte> buffer = stackalloc byte[8];
        foreach (var d in dims)
        {
            BinaryPrimitives.WriteInt32BigEndian(buffer, d);
            bytes.AddRange(buffer[..4].ToArray());
        }
        foreach (var v in values)
        {
            switch (type)
            {
                case IdxType.UInt8:
                    bytes.Add((byte)v);
                    break;
                case IdxType.Int8:
                    bytes.Add(unchecked((byte)(sbyte)v));
                    break;
                case IdxType.Int16:
                    BinaryPrimitives.WriteInt16BigEndian(buffer, (short)v);
                    bytes.AddRange(buffer[..2].ToArray());
                    break;
                case IdxType.Int32:
                    BinaryPrimitives.WriteInt32BigEndian(buffer, (int)v);
                    bytes.AddRange(buffer[..4].ToArray());
                    break;
                case IdxType.Float32:
                    BinaryPrimitives.WriteSingleBigEndian(buffer, (float)v);
                    bytes.AddRange(buffer[..4].ToArray());
                    break;
                default:
                    BinaryPrimitives.WriteDoubleBigEndian(buffer, v);
                    bytes.AddRange(buffer[..8].ToArray());
                    break;
            }
        }
        var path = Path.Combine(_dir, name);
        if (gzip)
        {
            using var file = File.Create(path);
            using var zip = new GZipStream(file, CompressionLevel.Fastest);
            zip.Write(bytes.ToArray());
        }
        else
        {
            File.WriteAllBytes(path, bytes.ToArray());
        }
        return path;
    }

    private static double[] Pixels(int n) => Enumerable.Range(0, n).Select(i => (double)(i * 37 % 256)).ToArray();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsUInt8Images(bool gzip)
    {
        var values = Pixels(2 * 3 * 4);
        var path = Write(gzip ? "images.idx.gz" : "images.idx", IdxType.UInt8, [2, 3, 4], values, gzip);
        var a = Idx.Read(path);
        Assert.Equal(IdxType.UInt8, a.Type);
        Assert.Equal(new[] { 2, 3, 4 }, a.Dims);
        Assert.Equal(24, a.Count);
        Assert.Equal(values, a.ToDoubleArray());
        Assert.Equal(values[5], a[5]);
        var images = Idx.ReadImages(path);
        Assert.Equal(new Shape(2, 3, 4), images.Shape);
        Assert.Equal(DType.Float32, images.DType);
        Assert.Equal(values.Select(v => (double)(float)(v / 255)).ToArray(), images.ToDoubleArray());
    }

    [Theory]
    [InlineData(IdxType.Int8, new[] { -128.0, -1, 0, 127 })]
    [InlineData(IdxType.Int16, new[] { -32768.0, -2, 300, 32767 })]
    [InlineData(IdxType.Int32, new[] { int.MinValue, -70000.0, 70000, int.MaxValue })]
    [InlineData(IdxType.Float32, new[] { -1.5, 0.25, 65536.125, float.Epsilon })]
    [InlineData(IdxType.Float64, new[] { -1.5, Math.PI, 1e300, double.Epsilon })]
    public void ReadsEveryElementType_BigEndian(IdxType type, double[] values)
    {
        var a = Idx.Read(Write("values.idx", type, [2, 2], values, gzip: type == IdxType.Int16));
        Assert.Equal(type, a.Type);
        Assert.Equal(values, a.ToDoubleArray());
        Assert.Equal(values, a.ToTensor(DType.Float64).ToDoubleArray());
        Assert.Equal(values.Select(v => v * 0.5).ToArray(), a.ToTensor(DType.Float64, 0.5).ToDoubleArray());
    }

    [Fact]
    public void ReadsLabelsAsInt64()
    {
        var labels = Idx.ReadLabels(Write("labels.idx", IdxType.UInt8, [5], [3, 0, 9, 1, 1]));
        Assert.Equal(DType.Int64, labels.DType);
        Assert.Equal([3L, 0, 9, 1, 1], labels.ToInt64Array());
    }

    [Fact]
    public void BadMagic_Throws()
    {
        var path = Path.Combine(_dir, "bad.idx");
        File.WriteAllBytes(path, [1, 2, 8, 1, 0, 0, 0, 1, 7]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.Read(path));
        Assert.Contains("magic", e.Message, StringComparison.Ordinal);
        Assert.Contains("bad.idx", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownType_Throws()
    {
        var path = Path.Combine(_dir, "type.idx");
        File.WriteAllBytes(path, [0, 0, 0x07, 1, 0, 0, 0, 1, 7]);
        Assert.Contains("0x07", Assert.Throws<InvalidDataException>(() => Idx.Read(path)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedData_Throws(bool gzip)
    {
        var path = Write("short.idx", IdxType.Int32, [4], [1, 2, 3, 4], gzip);
        var bytes = File.ReadAllBytes(path);
        if (!gzip)
        {
            File.WriteAllBytes(path, bytes[..^3]);
        }
        else
        {
            using var raw = new MemoryStream();
            using (var zip = new GZipStream(raw, CompressionLevel.Fastest, leaveOpen: true))
            {
                zip.Write([0, 0, 0x0C, 1, 0, 0, 0, 4, 0, 0, 0, 1]);
            }
            File.WriteAllBytes(path, raw.ToArray());
        }
        Assert.Contains("ends early", Assert.Throws<InvalidDataException>(() => Idx.Read(path)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadFromAStream_LeavesItOpen()
    {
        using var stream = File.OpenRead(Write("stream.idx.gz", IdxType.UInt8, [3], [1, 2, 3], gzip: true));
        Assert.Equal([1.0, 2, 3], Idx.Read(stream).ToDoubleArray());
        Assert.True(stream.CanRead);
        Assert.Throws<ArgumentException>(() => Idx.Read(Write("x.idx", IdxType.UInt8, [1], [1])).ToTensor(DType.Bool));
        Assert.Throws<ArgumentOutOfRangeException>(() => Idx.Read(Write("y.idx", IdxType.UInt8, [1], [1]))[1]);
    }

    [Fact]
    public void MissingFile_Throws()
    {
        Assert.Throws<FileNotFoundException>(() => Idx.Read(Path.Combine(_dir, "nothing.idx")));
    }

    [Fact]
    public void FashionMnist_LoadsPlainAndGzipNames()
    {
        Write("train-images-idx3-ubyte.gz", IdxType.UInt8, [3, 28, 28], Pixels(3 * 28 * 28), gzip: true);
        Write("train-labels-idx1-ubyte.gz", IdxType.UInt8, [3], [9, 0, 3], gzip: true);
        Write("t10k-images-idx3-ubyte", IdxType.UInt8, [2, 28, 28], Pixels(2 * 28 * 28));
        Write("t10k-labels-idx1-ubyte", IdxType.UInt8, [2], [1, 8]);
        var data = FashionMnist.Load(_dir);
        Assert.Equal(new Shape(3, 28, 28), data.TrainImages.Shape);
        Assert.Equal([9L, 0, 3], data.TrainLabels.ToInt64Array());
        Assert.Equal(new Shape(2, 28, 28), data.TestImages.Shape);
        Assert.Equal([1L, 8], data.TestLabels.ToInt64Array());
        Assert.InRange(data.TrainImages.Max().Item(), 0.99, 1.0);
        Assert.Equal("Ankle boot", FashionMnist.ClassNames[9]);
    }

    [Fact]
    public void FashionMnist_MissingFile_NamesThePathsTried()
    {
        var e = Assert.Throws<FileNotFoundException>(() => FashionMnist.Load(_dir));
        Assert.Contains(Path.Combine(_dir, "train-images-idx3-ubyte"), e.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(_dir, "train-images-idx3-ubyte.gz"), e.Message, StringComparison.Ordinal);
    }
}
