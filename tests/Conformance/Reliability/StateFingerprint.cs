using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Reliability;

/// <summary>
/// A text image of every piece of state a failed call could have touched: tensor identity, shape,
/// dtype, version and the exact bits of every element, optimizer state and step counts, the
/// fast-weight history and the overrides. Two fingerprints are equal exactly when nothing moved, so
/// a failure twin asserts <c>Assert.Equal(before, after)</c> after the throw.
/// </summary>
internal static class StateFingerprint
{
    public static string Of(params Tensor?[] tensors)
    {
        var sb = new StringBuilder();
        foreach (var t in tensors)
        {
            Append(sb, t);
        }
        return sb.ToString();
    }

    public static string Of(Module module)
    {
        var sb = new StringBuilder();
        foreach (var (name, p) in module.NamedParameterHandles())
        {
            sb.Append(name).Append(": ");
            Append(sb, p.Data);
            sb.Append(" grad ");
            Append(sb, p.Grad);
        }
        foreach (var (name, b) in module.NamedBufferHandles())
        {
            sb.Append(name).Append(": ");
            Append(sb, b.Data);
        }
        sb.Append("training ").Append(module.Training).Append('\n');
        return sb.ToString();
    }

    public static string Of(Optimizer opt)
    {
        var sb = new StringBuilder();
        for (int gi = 0; gi < opt.ParamGroups.Count; gi++)
        {
            var g = opt.ParamGroups[gi];
            sb.Append("group ").Append(gi).Append(' ');
            foreach (var (k, v) in g.Options.OrderBy(o => o.Key, StringComparer.Ordinal))
            {
                sb.Append(k).Append('=').Append(BitConverter.DoubleToInt64Bits(v).ToString("x", CultureInfo.InvariantCulture)).Append(' ');
            }
            sb.Append('\n');
            foreach (var p in g.Params)
            {
                Append(sb, p);
                sb.Append(" grad ");
                Append(sb, p.Grad);
                if (opt.State.TryGetValue(p, out var s))
                {
                    Append(sb, s);
                }
            }
        }
        return sb.ToString();
    }

    public static string Of(FunctionalModule fmodel)
    {
        var sb = new StringBuilder();
        sb.Append("history ").Append(fmodel.HistoryLength).Append(" max ").Append(fmodel.MaxHistory).Append('\n');
        for (int t = 0; t < fmodel.HistoryLength; t++)
        {
            IReadOnlyList<Tensor> ps;
            try
            {
                ps = fmodel.Parameters(t);
            }
            catch (ArgumentOutOfRangeException)
            {
                sb.Append("time ").Append(t).Append(" dropped\n");
                continue;
            }
            sb.Append("time ").Append(t).Append('\n');
            foreach (var p in ps)
            {
                Append(sb, p);
            }
        }
        foreach (var (name, value) in fmodel.Buffers())
        {
            sb.Append(name).Append(": ");
            Append(sb, value);
        }
        return sb.ToString();
    }

    public static string Of(DifferentiableOptimizer diffopt, int parameterCount)
    {
        var sb = new StringBuilder();
        sb.Append("steps ").Append(diffopt.StepCount).Append('\n');
        for (int i = 0; i < parameterCount; i++)
        {
            sb.Append("state ").Append(i).Append(": ");
            if (diffopt.StateOf(i) is { } s)
            {
                Append(sb, s);
            }
            else
            {
                sb.Append("none\n");
            }
        }
        foreach (var key in diffopt.Override.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            sb.Append("override ").Append(key).Append(": ");
            foreach (var v in diffopt.Override[key])
            {
                if (v.Tensor is { } t)
                {
                    Append(sb, t);
                }
                else
                {
                    sb.Append(BitConverter.DoubleToInt64Bits(v.Value).ToString("x", CultureInfo.InvariantCulture)).Append('\n');
                }
            }
        }
        for (int gi = 0; gi < diffopt.ParamGroups.Count; gi++)
        {
            foreach (var (k, v) in diffopt.ParamGroups[gi].OrderBy(o => o.Key, StringComparer.Ordinal))
            {
                sb.Append(k).Append('=').Append(BitConverter.DoubleToInt64Bits(v).ToString("x", CultureInfo.InvariantCulture)).Append(' ');
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    private static void Append(StringBuilder sb, ParamState s)
    {
        sb.Append("step ").Append(s.Step).Append('\n');
        foreach (var (k, v) in s.Tensors.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            sb.Append(k).Append(": ");
            Append(sb, v);
        }
    }

    private static void Append(StringBuilder sb, Tensor? t)
    {
        if (t is null)
        {
            sb.Append("null\n");
            return;
        }
        sb.Append('#').Append(RuntimeHelpers.GetHashCode(t).ToString("x", CultureInfo.InvariantCulture))
            .Append(' ').Append(t.Shape).Append(' ').Append(t.DType).Append(' ').Append(t.Device)
            .Append(" v").Append(t.Version.Value).Append(" rg ").Append(t.RequiresGrad).Append(' ');
        foreach (var v in t.ToDoubleArray())
        {
            sb.Append(BitConverter.DoubleToInt64Bits(v).ToString("x", CultureInfo.InvariantCulture)).Append(',');
        }
        sb.Append('\n');
    }
}
