using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Nn;
using Higher.Optim;
using Higher.Serialization;

namespace Higher.Conformance.User;

/// <summary>
/// Checkpoints in the safetensors format, against files written by PyTorch
/// (tools/fixtures/gen_safetensors_fixtures.py writes them by hand from the format's specification
/// and records torch's outputs) and a file written by Higher that the same script loads in PyTorch.
/// </summary>
public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("higher-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    private static JsonElement Json => LazyJson.Value;

    private static readonly Lazy<JsonElement> LazyJson = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Fixture("safetensors.json")));
        return doc.RootElement.Clone();
    });

    /// <summary>The torch model of the generator: Linear 3-8, BatchNorm1d 8, ReLU, Linear 8-2.</summary>
    private static Sequential NewModel() => new(new Linear(3, 8), new BatchNorm1d(8), new Relu(), new Linear(8, 2));

    private static void AssertClose(double[] expected, double[] actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol,
                string.Create(CultureInfo.InvariantCulture, $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tol})."));
        }
    }

    [Fact]
    public void TorchFile_LoadsStrictly_AndGivesTorchsOutput()
    {
        var model = NewModel();
        SafeTensors.LoadModel(model, Fixture("torch_model.safetensors"));
        model.Eval();
        var m = Json.GetProperty("model");
        var x = FixtureArray.Parse(m.GetProperty("input")).ToTensor(Device.Cpu).To(DType.Float32);
        var expected = FixtureArray.Parse(m.GetProperty("output"));
        using (Autograd.NoGrad())
        {
            var y = model.Forward(x);
            Assert.Equal(expected.Shape, y.Shape.ToArray());
            AssertClose(expected.Values, y.ToDoubleArray(), 1e-5, "torch output");
        }
        var keys = m.GetProperty("keys").EnumerateArray().Select(k => k.GetString()!).ToArray();
        Assert.Equal(keys, model.StateDict().Keys.Order(StringComparer.Ordinal).ToArray());
        // num_batches_tracked arrives as the int64 3 (three training batches in torch).
        Assert.Equal([3L], ((Sequential)model)[1].StateDict()["num_batches_tracked"].ToInt64Array());
        var content = SafeTensors.Load(Fixture("torch_model.safetensors"));
        Assert.Equal("pt", content.Metadata["format"]);
    }

    [Fact]
    public void TorchFile_EveryDType_ReadsTorchsValues()
    {
        var content = SafeTensors.Load(Fixture("torch_dtypes.safetensors"));
        foreach (var entry in Json.GetProperty("dtypes").EnumerateObject())
        {
            var expected = FixtureArray.Parse(entry.Value.GetProperty("value"));
            var t = content.Tensors[entry.Name];
            Assert.Equal(expected.Shape, t.Shape.ToArray());
            string code = entry.Value.GetProperty("code").GetString()!;
            switch (code)
            {
                case "F64":
                    Assert.Equal(DType.Float64, t.DType);
                    Assert.Equal(expected.Values, t.ToDoubleArray());
                    break;
                case "F32" or "F16" or "BF16":
                    Assert.Equal(DType.Float32, t.DType);
                    Assert.Equal(expected.Values, t.ToDoubleArray()); // half and bfloat16 widen to float32 exactly
                    break;
                case "BOOL":
                    Assert.Equal(DType.Bool, t.DType);
                    Assert.Equal(expected.Booleans, t.ToBoolArray());
                    break;
                default:
                    Assert.Equal(DType.Int64, t.DType);
                    Assert.Equal(expected.Integers, t.ToInt64Array());
                    break;
            }
        }
        Assert.Equal(12, content.Tensors.Count);
    }

    /// <summary>
    /// The model Higher saves for PyTorch: the torch weights after five Adam steps in Higher (train
    /// mode, so the batch-norm statistics move too). The generator loads higher_model.safetensors in
    /// PyTorch (strict) and checks PyTorch's output on it equals higher_model.json's.
    /// </summary>
    private static (Sequential Model, Tensor X, Tensor Y) HigherTrainedModel()
    {
        var model = NewModel();
        SafeTensors.LoadModel(model, Fixture("torch_model.safetensors"));
        var x = FixtureArray.Parse(Json.GetProperty("model").GetProperty("input")).ToTensor(Device.Cpu).To(DType.Float32);
        var target = Tensor.FromArray(new float[] { 1, -1, 0.5f, 0, -0.5f, 2, 1, 1, 0, -2 }, [5, 2]);
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = 0.05 });
        for (int i = 0; i < 5; i++)
        {
            opt.ZeroGrad();
            F.MseLoss(model.Forward(x), target).Backward();
            opt.Step();
        }
        model.Eval();
        using (Autograd.NoGrad())
        {
            return (model, x, model.Forward(x));
        }
    }

    [Fact]
    public void HigherFile_IsWhatHigherWrites_AndHoldsTheTrainedModel()
    {
        var (model, x, y) = HigherTrainedModel();
        if (Environment.GetEnvironmentVariable("HIGHER_WRITE_FIXTURES") == "1")
        {
            string dir = Path.Combine(Path.GetDirectoryName(SourcePath())!, "..", "Fixtures");
            SafeTensors.SaveModel(model, Path.Combine(dir, "higher_model.safetensors"), new Dictionary<string, string> { ["written_by"] = "Higher" });
            var sb = new StringBuilder();
            sb.Append("{\"input\": ").Append(Encode(x)).Append(",\n \"output\": ").Append(Encode(y)).Append("}\n");
            File.WriteAllText(Path.Combine(dir, "higher_model.json"), sb.ToString());
        }
        var committed = File.ReadAllBytes(Fixture("higher_model.safetensors"));
        var content = SafeTensors.Deserialize(committed);
        // The committed bytes are exactly Higher's serialization of the tensors they hold (the writer's format, not a hand-edited file).
        Assert.Equal(committed, SafeTensors.Serialize(content.Tensors, content.Metadata));
        // And they hold this model: the same weights and buffers as training it again here.
        var state = model.StateDict();
        Assert.Equal(state.Keys.Order(StringComparer.Ordinal), content.Tensors.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, v) in state)
        {
            AssertClose(v.ToDoubleArray(), content.Tensors[k].ToDoubleArray(), 1e-6, k);
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Fixture("higher_model.json")));
        AssertClose(FixtureArray.Parse(doc.RootElement.GetProperty("output")).Values, y.ToDoubleArray(), 1e-6, "Higher output");
        var torchOut = FixtureArray.Parse(Json.GetProperty("model").GetProperty("output")).Values;
        Assert.True(torchOut.Zip(y.ToDoubleArray()).Max(p => Math.Abs(p.First - p.Second)) > 1e-2, "Training should have moved the output away from torch's initial one.");
    }

    private static string SourcePath([CallerFilePath] string path = "") => path;

    private static string Encode(Tensor t) =>
        $"{{\"shape\": [{string.Join(", ", t.Shape.ToArray())}], \"dtype\": \"float64\", \"data\": [{string.Join(", ", t.ToDoubleArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture)))}]}}";

    [Fact]
    public void SaveAndLoad_RoundTripsEveryDTypeExactly()
    {
        var tensors = new Dictionary<string, Tensor>
        {
            ["a.f32"] = Tensor.FromArray(new[] { 1.5f, -0f, float.MaxValue, float.Epsilon, float.NaN, float.NegativeInfinity }, [2, 3]),
            ["b.f64"] = Tensor.FromArray(new[] { Math.PI, -1e-300 }),
            ["c.i64"] = Tensor.FromArray(new[] { long.MinValue, 0, long.MaxValue }),
            ["d.bool"] = Tensor.FromArray(new[] { true, false }),
            ["e.scalar"] = Tensor.Scalar(3, DType.Float64),
            ["f.empty"] = Tensor.Zeros([0, 4]),
        };
        string path = Path.Combine(_dir, "t.safetensors");
        SafeTensors.Save(path, tensors, new Dictionary<string, string> { ["k"] = "v" });
        var back = SafeTensors.Load(path);
        Assert.Equal("v", back.Metadata["k"]);
        foreach (var (k, v) in tensors)
        {
            Assert.Equal(v.DType, back.Tensors[k].DType);
            Assert.Equal(v.Shape, back.Tensors[k].Shape);
            Assert.Equal(v.ToDoubleArray().Select(BitConverter.DoubleToInt64Bits), back.Tensors[k].ToDoubleArray().Select(BitConverter.DoubleToInt64Bits));
        }
        // The layout of the specification: u64 LE header length (padded to 8), JSON, data in name order.
        var bytes = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n));
        var a = header.RootElement.GetProperty("a.f32");
        Assert.Equal("F32", a.GetProperty("dtype").GetString());
        Assert.Equal([2, 3], a.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal([0L, 24L], a.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(1.5f, BitConverter.ToSingle(bytes, 8 + (int)n));
    }

    [Fact]
    public void LoadModel_Strict_NamesTheKeyAndBothShapes_AndChangesNothing()
    {
        var source = new Sequential(new Linear(3, 8), new Linear(8, 2));
        string path = Path.Combine(_dir, "m.safetensors");
        SafeTensors.SaveModel(source, path);
        var wrong = new Sequential(new Linear(3, 8), new Linear(8, 3));
        var before = wrong.Parameters().Select(p => p.ToDoubleArray()).ToArray();
        var e = Assert.Throws<ArgumentException>(() => SafeTensors.LoadModel(wrong, path));
        Assert.Contains("'1.weight'", e.Message, StringComparison.Ordinal);
        Assert.Contains("[2, 8]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[3, 8]", e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Equal(before, wrong.Parameters().Select(p => p.ToDoubleArray()).ToArray());

        var bigger = new Sequential(new Linear(3, 8), new Linear(8, 2), new Linear(2, 2));
        var missing = Assert.Throws<ArgumentException>(() => SafeTensors.LoadModel(bigger, path));
        Assert.Contains("2.weight", missing.Message, StringComparison.Ordinal);
        // Not strict: the keys present are loaded, the others kept.
        SafeTensors.LoadModel(bigger, path, strict: false);
        Assert.Equal(source.Parameters()[0].ToDoubleArray(), bigger.Parameters()[0].ToDoubleArray());
    }

    [Fact]
    public void OptimizerState_SavedAndLoaded_ResumesTrainingExactly()
    {
        var x = Tensor.Randn([6, 3], generator: new Generator(3));
        var y = Tensor.Randn([6, 2], generator: new Generator(4));
        var a = new Sequential(new Linear(3, 4, generator: new Generator(5)), new Tanh(), new Linear(4, 2, generator: new Generator(6)));
        var optA = new Adam(a.Parameters(), new AdamOptions { Lr = 0.01, Amsgrad = true });
        void Step(Module m, Optimizer o)
        {
            o.ZeroGrad();
            F.MseLoss(m.Forward(x), y).Backward();
            o.Step();
        }
        for (int i = 0; i < 3; i++)
        {
            Step(a, optA);
        }
        string mp = Path.Combine(_dir, "model.safetensors"), op = Path.Combine(_dir, "adam.safetensors");
        SafeTensors.SaveModel(a, mp);
        SafeTensors.SaveOptimizer(optA, op);

        var b = new Sequential(new Linear(3, 4), new Tanh(), new Linear(4, 2));
        var optB = new Adam(b.Parameters(), new AdamOptions { Lr = 0.5 });
        SafeTensors.LoadModel(b, mp);
        SafeTensors.LoadOptimizer(optB, op);
        Assert.Equal(0.01, optB.ParamGroups[0]["lr"]);
        for (int i = 0; i < 2; i++)
        {
            Step(a, optA);
            Step(b, optB);
        }
        for (int i = 0; i < a.Parameters().Count; i++)
        {
            Assert.Equal(a.Parameters()[i].ToDoubleArray(), b.Parameters()[i].ToDoubleArray());
        }

        var sgd = new Sgd(b.Parameters(), new SgdOptions { Lr = 0.1 });
        var e = Assert.Throws<ArgumentException>(() => SafeTensors.LoadOptimizer(sgd, op));
        Assert.Contains("Adam", e.Message, StringComparison.Ordinal);
        Assert.Contains("Sgd", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(() => SafeTensors.LoadOptimizer(optB, mp));
    }

    [Fact]
    public void MalformedFiles_AreRefused_NamingTheProblem()
    {
        var good = SafeTensors.Serialize(new Dictionary<string, Tensor> { ["w"] = Tensor.Ones([2, 2]) });
        Assert.Contains("too short", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(good.AsSpan(0, 5))).Message, StringComparison.Ordinal);
        Assert.Contains("header length", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(good.AsSpan(0, 20))).Message, StringComparison.Ordinal);
        var truncated = good.AsSpan(0, good.Length - 4).ToArray();
        Assert.Contains("cover 16 bytes", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(truncated)).Message, StringComparison.Ordinal);
        Assert.Contains("'w'", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(Make("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12))).Message, StringComparison.Ordinal);
        Assert.Contains("'C64'", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(Make("{\"w\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8))).Message, StringComparison.Ordinal);
        Assert.Contains("overlap", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(
            Make("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8))).Message, StringComparison.Ordinal);
        Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(Make("{\"w\":", 0))).Message, StringComparison.Ordinal);
    }

    private static byte[] Make(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        return bytes;
    }
}
